package shard

// localSubs lists the sessions of one shard subscribed to one filter. A
// slice iterates much faster than a map on every delivery; the index map
// exists only for filters with many subscribers, so the common filter with
// one subscriber costs one small allocation.
type localSubs struct {
	list  []localSub
	index map[*session]int
}

type localSub struct {
	sess *session
	qos  byte
}

// indexAbove is the list length past which lookups use the index map.
const indexAbove = 16

func (l *localSubs) find(sess *session) int {
	if l.index != nil {
		if i, ok := l.index[sess]; ok {
			return i
		}
		return -1
	}
	for i := range l.list {
		if l.list[i].sess == sess {
			return i
		}
	}
	return -1
}

// set adds sess or changes its QoS.
func (l *localSubs) set(sess *session, qos byte) {
	if i := l.find(sess); i >= 0 {
		l.list[i].qos = qos
		return
	}
	l.list = append(l.list, localSub{sess: sess, qos: qos})
	if l.index != nil {
		l.index[sess] = len(l.list) - 1
	} else if len(l.list) > indexAbove {
		l.index = make(map[*session]int, len(l.list))
		for i, e := range l.list {
			l.index[e.sess] = i
		}
	}
}

// remove drops sess; order among the others does not matter.
func (l *localSubs) remove(sess *session) {
	i := l.find(sess)
	if i < 0 {
		return
	}
	last := len(l.list) - 1
	if i != last {
		l.list[i] = l.list[last]
		if l.index != nil {
			l.index[l.list[i].sess] = i
		}
	}
	l.list[last] = localSub{}
	l.list = l.list[:last]
	if l.index != nil {
		delete(l.index, sess)
		if len(l.list) <= indexAbove/2 {
			l.index = nil
		}
	}
}

func (l *localSubs) len() int { return len(l.list) }
