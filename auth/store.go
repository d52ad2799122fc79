package auth

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Store holds the current password file and ACL and swaps in new ones on
// Reload. Reads (Authenticate, Authorize) take no lock: they load one
// immutable snapshot through an atomic pointer, so any number of shard and
// reader goroutines may call them while a reload runs. Reloads serialise
// among themselves on a mutex.
type Store struct {
	passwordFile string
	aclFile      string

	mu  sync.Mutex // serialises Reload, so an older read never wins the swap
	cur atomic.Pointer[snapshot]
}

// snapshot is one consistent pair of rules; it is never modified.
type snapshot struct {
	passwords *Passwords // nil: no password file configured
	acl       *ACL       // nil: no ACL file configured
}

// NewStore loads the password file and the ACL file. An empty path means
// that file is not configured: with no password file, Authenticate accepts
// nobody; with no ACL file, Authorize allows everything. An error is a
// *ParseError naming the file, the line and the reason.
func NewStore(passwordFile, aclFile string) (*Store, error) {
	s := &Store{passwordFile: passwordFile, aclFile: aclFile}
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(snap)
	return s, nil
}

func (s *Store) load() (*snapshot, error) {
	snap := &snapshot{}
	var err error
	if s.passwordFile != "" {
		if snap.passwords, err = LoadPasswordFile(s.passwordFile); err != nil {
			return nil, err
		}
	}
	if s.aclFile != "" {
		if snap.acl, err = LoadACL(s.aclFile); err != nil {
			return nil, err
		}
	}
	return snap, nil
}

// Reload re-reads both files (on SIGHUP). Both must load for either to take
// effect; on any error the previous rules stay in force and the error names
// the file, the line and the reason. Connections already accepted are not
// re-authenticated here; the new ACL applies to every later Authorize.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, err := s.load()
	if err != nil {
		return fmt.Errorf("auth: reload failed, keeping the previous rules: %w", err)
	}
	s.cur.Store(snap)
	return nil
}

// Authenticate reports whether the CONNECT credentials match the password
// file. hasUser is the CONNECT user name flag; a client without a user name
// is anonymous and gets false here: whether anonymous clients are let in is
// the caller's decision (its allow-anonymous setting), as is what to do
// when no password file is configured (HasPasswordFile), in which case
// Authenticate is always false. The password check is constant-time; see
// Passwords.Check.
func (s *Store) Authenticate(user string, password []byte, hasUser bool) (ok bool) {
	if !hasUser {
		return false
	}
	return s.cur.Load().passwords.Check(user, password)
}

// Authorize reports whether the client may have access to topic under the
// current ACL (see ACL.Allowed and the package documentation). With no ACL
// file configured every access is allowed.
func (s *Store) Authorize(clientID, username string, anonymous bool, access Access, topic string) bool {
	acl := s.cur.Load().acl
	if acl == nil {
		return true
	}
	return acl.Allowed(clientID, username, anonymous, access, topic)
}

// HasPasswordFile reports whether a password file is configured.
func (s *Store) HasPasswordFile() bool { return s.passwordFile != "" }

// HasACL reports whether an ACL file is configured.
func (s *Store) HasACL() bool { return s.aclFile != "" }
