package echoadapter

import (
	"sync/atomic"
	"unsafe"

	"github.com/labstack/echo/v4"
)

// handlerMemo remembers the handler a middleware made around each next
// handler. Echo v4 applies a route's middleware on every request
// (Echo.add wraps the route's handler in a closure calling
// applyMiddleware), so a middleware returning a new closure over next
// allocates once per request: with the memo, the same next gets the
// handler made the first time, and a hit allocates nothing.
//
// A next is recognised by its func value's pointer: the handler made for
// it captures it, so while a slot holds that handler the pointer cannot
// be reused by another func. Slots are filled once and never replaced
// (no write on the request path once they are set, so no contention);
// a next that finds its slot taken by another gets a new handler per
// request, as without the memo.
type handlerMemo struct {
	slots [16]atomic.Pointer[memoSlot]
}

type memoSlot struct {
	next unsafe.Pointer
	h    echo.HandlerFunc
}

// funcPointer is the pointer a func value holds.
func funcPointer(f echo.HandlerFunc) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&f)) }

func (m *handlerMemo) slot(p unsafe.Pointer) *atomic.Pointer[memoSlot] {
	x := uint64(uintptr(p)) * 0x9e3779b97f4a7c15
	return &m.slots[x>>(64-4)]
}

// wrap returns mk(next), the handler made before for the same next
// when there is one.
func (m *handlerMemo) wrap(next echo.HandlerFunc, mk func(echo.HandlerFunc) echo.HandlerFunc) echo.HandlerFunc {
	p := funcPointer(next)
	if p == nil {
		return mk(next)
	}
	s := m.slot(p)
	if ms := s.Load(); ms != nil {
		if ms.next == p {
			return ms.h
		}
		return mk(next) // the slot is another next's
	}
	h := mk(next)
	s.CompareAndSwap(nil, &memoSlot{next: p, h: h})
	return h
}
