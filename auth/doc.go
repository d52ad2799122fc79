// Package auth reads Mosquitto-compatible password and ACL files and
// answers the broker's two questions: may this CONNECT log in
// (Authenticate), and may this client read or write this topic (Authorize).
// Store holds the current rules and reloads them on SIGHUP.
//
// # Password file
//
// One "user:hash" per line, as written by mosquitto_passwd; blank lines and
// lines starting with '#' are skipped, and blanks around the user and the
// hash are trimmed. Two hash formats are read:
//
//	$7$<iterations>$<base64 salt>$<base64 hash>   PBKDF2-HMAC-SHA512 (Mosquitto 2)
//	$6$<base64 salt>$<base64 hash>                SHA-512(password || salt) (Mosquitto 1.x)
//
// The salt is 12 (or 64) bytes and the hash 64 bytes, in padded standard
// base64. HashPassword and SetPassword write $7$ with 101 iterations and a
// random 12-byte salt, exactly as mosquitto_passwd does, so either tool's
// file works with either broker. Mosquitto skips lines it cannot use; iotd
// refuses the whole file instead (a *ParseError with file, line and
// reason), so no user silently disappears. Mosquitto 2.1's $argon2id$ is
// not read.
//
// Passwords.Check compares hashes with crypto/subtle in constant time, and
// runs the same PBKDF2 work against a decoy hash when the user is unknown,
// so timing reveals neither the password nor which users exist.
//
// # ACL file
//
//	# comment
//	topic [read|write|readwrite|deny] FILTER
//	user NAME
//	topic [read|write|readwrite|deny] FILTER
//	pattern [read|write|readwrite|deny] FILTER
//
// The access word may be left out, meaning readwrite. Every FILTER must be
// a valid MQTT topic filter; any line that is not one of the above is a
// load error naming the file, line and reason.
//
// # ACL semantics
//
// Allowed(clientID, username, anonymous, access, topic) decides as follows.
//
//  1. Rules that apply. "topic" lines before the first "user" line apply
//     to anonymous clients (no user name in CONNECT) only. "topic" lines
//     after "user NAME" apply to clients logged in as NAME only (several
//     blocks for one name add up); such a client does not get the
//     anonymous lines, and a user without a block gets only the patterns.
//     "pattern" lines apply to every client, wherever they appear in the
//     file.
//  2. Substitution. In a "pattern" line, %c is replaced by the client ID
//     and %u by the user name, anywhere in the filter, scanning left to
//     right; in a "topic" line they are literal. A pattern containing %u
//     does not apply to an anonymous client or an empty user name, and one
//     containing %c does not apply to an empty client ID.
//  3. Unsafe identities. When the file has at least one "pattern" line, a
//     client whose client ID, or user name (unless anonymous), contains
//     '+', '#' or '/' is denied every access, including what its own
//     "topic" lines grant: such a value could turn "%c" into a wildcard or
//     into another client's subtree. Mosquitto refuses these values too
//     (2.0 checks '+' and '#', 1.x also '/'), but only after the client's
//     "topic" lines have had their say; iotd refuses first, because a deny
//     pattern that cannot be evaluated safely must not be skipped. Also, a
//     pattern matches a topic starting with '$' only if the pattern as
//     written starts with '$', so a client ID "$SYS" does not turn "%c/#"
//     into "$SYS/#".
//  4. Deny beats allow. If any applicable "deny" rule (anonymous, user or
//     pattern) matches, access is denied, whatever the order of the lines
//     and whatever allow rules also match. This is stricter than
//     Mosquitto 2, which checks deny lines first only within each set and
//     returns a user's allow before looking at the patterns (so there a
//     deny pattern does not override a user allow).
//  5. Allow. Otherwise access is allowed if an applicable rule whose access
//     includes the requested one matches: read grants Read, write grants
//     Write, readwrite both.
//  6. Default deny. Otherwise access is denied. A file with no rule for a
//     client denies it everything. (With no ACL file at all, Store allows
//     everything, as Mosquitto does.)
//
// Matching follows MQTT section 4.7, byte for byte: '+' matches exactly
// one level, '#' the parent level and any below ("a/#" matches "a"), and a
// filter that starts with '+' or '#' never matches a topic that starts with
// '$' [MQTT-4.7.2-1]. $SYS has no other special case: "topic read $SYS/#"
// grants reading it, while "topic read #" does not. Write needs a valid
// topic name (no wildcards); anything else is denied.
//
// # Subscriptions
//
// The broker checks Read with the SUBSCRIBE filter itself. A filter with
// wildcards is matched against each ACL filter as if it were a topic, with
// its wildcards required to be covered: the subscription is allowed only
// when a single allow rule matches every topic the filter can match ('+'
// is covered by '+' or '#', '#' only by '#'), and refused when a deny rule
// covers it all. So "topic read a/#" allows subscribing to "a/+/b" and
// "a/#", "topic read a/+" allows "a/+" but not "a/#", and "topic read
// sensors/temp" does not allow "sensors/+". This is the rule of Mosquitto's
// mosquitto_sub_matches_acl; Mosquitto 2.0's built-in ACL skips SUBSCRIBE
// checks and relies on delivery checks alone. A deny rule that covers only
// part of a subscription ("topic deny a/secret" against "a/#") does not
// refuse it, so the broker must also check Read for every message it
// delivers, retained messages included; that is where such a deny takes
// effect.
//
// What the broker does with a refusal is its concern, not this package's:
// a refused SUBSCRIBE filter gets return code 0x80 in SUBACK; a refused
// PUBLISH is acknowledged as usual and discarded, or the connection is
// closed [MQTT-3.3.5-2]; a refused will topic refuses the CONNECT.
//
// # Store and reload
//
// Store loads both files, answers from an immutable snapshot read through
// an atomic pointer (no lock on the read path), and Reload swaps in a new
// snapshot only when both files load; otherwise the old rules stay and the
// error says which file, line and why. Authenticate is false for anonymous
// clients and when no password file is configured; the caller decides
// whether anonymous clients are allowed, and, as Mosquitto 2 does, should
// refuse a client with a user name that fails Authenticate even when
// anonymous access is allowed.
package auth
