// Package guidebook is StratoVirt's published interface, machine-readable:
// the command line of docs/config_guidebook.md and the QMP commands of
// docs/qmp.md, both embedded here unchanged from openeuler-mirror/stratovirt
// at commit d5b320371f25a7198c7b09cf26b27b7c2cfa4e5c (2026-04-24), under
// the Mulan Permissive Software License v2 (LICENSE in this directory).
//
// The StratoVirt stand-in (hack/standins/stratovirt) accepts only what
// Grammar says the guidebook defines, and the StratoVirt driver's tests
// check every option, device and property it emits against it, so that
// neither drifts from the document.
//
// # How the grammar is read
//
// Options come from the lines starting with "-" in the documents' shell
// blocks, except the blocks that are whole example command lines (a line
// naming stratovirt or ozone, or continued with "\"), whose typos (e.g.
// "bug=pcie.0") are not grammar, and the Ozone section (ozone's own
// options). Optional parts in brackets are taken as given, <placeholders>
// and {a|b} choices as values. A value of comma-separated key=value items
// is a property list: its first item, when it is a bare word, is the kind
// (the device driver, the chardev or netdev backend, "unix:" of -qmp); a
// leading "[key=]value" is a positional property (-machine [type=]name,
// -smp [cpus=]n, -m [size=]<megs>).
//
// The guidebook names some properties only in its bullet lists ("fd" of a
// tap netdev, "vhostfd" of vhost-vsock): a section's bullets ("* name:
// ...", "* a/b: ...") are properties of every property-list option of that
// section (of -chardev only in the Chardev section). Bullets sometimes use
// an informal name (vsock_id, guest_cid, mount_tag): these are accepted as
// documented too; the stand-in's own table of what it emulates is stricter.
//
// QMP: the commands are qmp.md's "###" headings below its command
// sections; the examples are its "->" and "<-" lines, the greeting the
// JSON after "greeting".
package guidebook
