package leasesync

// LineName parses a leasesync plugin line as setup does and returns its
// relationship name, for the start-up check of the plugin chain. Its error
// is the one the plugin's setup would report for the line; with an error,
// the name is still returned if the name= word was read (a bad TLS file
// does not hide which relationship the line is).
func LineName(args []string) (string, error) {
	cfg, err := parse(args)
	return cfg.Name, err
}
