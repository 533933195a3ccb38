// Package guestimage reads what a guest image directory
// (hack/vm/guest-image.sh: manifest.json, manifest-marker.json) says about
// itself, for the benchmarks' reports (hack/bench/vmboot,
// hack/bench/vmmbench).
package guestimage
