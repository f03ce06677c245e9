package core

import "testing"

// A flight's done channel is made only when someone waits: one asked for
// before the landing is closed by it; one asked for after it is closed
// already; a flight nobody waited for lands without making one.
func TestFlightDoneMadeByWaiters(t *testing.T) {
	var g flightGroup
	f, leader := g.join("k", 0)
	if !leader || f.done != nil {
		t.Fatalf("leader %v, done %v: a new flight made its channel", leader, f.done)
	}
	w, leader := g.join("k", 0)
	if leader || w != f {
		t.Fatal("the second call did not join the flight")
	}
	done := g.doneOf(w)
	select {
	case <-done:
		t.Fatal("done closed before the landing")
	default:
	}
	g.land(f.key, f)
	<-done
	<-g.doneOf(f)

	lone, _ := g.join("lone", 0)
	g.land(lone.key, lone)
	if lone.done != nil {
		t.Fatal("a flight nobody waited for made its channel")
	}
	<-g.doneOf(lone)
}
