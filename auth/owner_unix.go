//go:build unix

package auth

import (
	"io/fs"
	"os"
	"syscall"
)

type fileOwner struct{ uid, gid int }

func ownerOf(fi fs.FileInfo) *fileOwner {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return &fileOwner{uid: int(st.Uid), gid: int(st.Gid)}
	}
	return nil
}

// apply gives f the recorded owner when the process may (as root, or when
// the owner is already ours); otherwise it leaves f as created.
func (o *fileOwner) apply(f *os.File) {
	if o == nil {
		return
	}
	_ = f.Chown(o.uid, o.gid)
}
