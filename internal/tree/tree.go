// Package tree works on the directory trees vmdeb builds images from, on
// the host's side: the mounts below one, removing one without ever
// leaving it, clamping its dates, copying within one. A tree may hold
// links planted by packages or hooks: nothing here follows them out.
package tree
