// Package docs is the project's documentation. Its test checks that
// every document, section and invariant cited in the repository exists.
package docs
