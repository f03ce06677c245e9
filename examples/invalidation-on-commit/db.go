package main

import (
	"errors"
	"sync"
)

// DB is a tiny transactional store standing in for a SQL database: writes
// made in a Tx become visible together at Commit, or never.
type DB struct {
	mu   sync.Mutex
	rows map[int]Article
	// beforeApply, when set (by tests), runs inside Commit just before the
	// writes become visible: the moment another request can still read
	// the old rows.
	beforeApply func()
}

// Article is one row.
type Article struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
	Rev   int    `json:"rev"`
}

// NewDB returns a DB holding rows.
func NewDB(rows ...Article) *DB {
	db := &DB{rows: map[int]Article{}}
	for _, a := range rows {
		db.rows[a.ID] = a
	}
	return db
}

// Get reads a committed row.
func (db *DB) Get(id int) (Article, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	a, ok := db.rows[id]
	return a, ok
}

// All reads every committed row.
func (db *DB) All() []Article {
	db.mu.Lock()
	defer db.mu.Unlock()
	out := make([]Article, 0, len(db.rows))
	for id := 1; len(out) < len(db.rows); id++ {
		if a, ok := db.rows[id]; ok {
			out = append(out, a)
		}
	}
	return out
}

// Tx is a transaction: its writes are buffered until Commit.
type Tx struct {
	db          *DB
	writes      map[int]Article
	afterCommit []func()
	done        bool
}

// ErrTxDone is returned by Commit on a finished transaction.
var ErrTxDone = errors.New("transaction already committed or rolled back")

// Begin starts a transaction.
func (db *DB) Begin() *Tx { return &Tx{db: db, writes: map[int]Article{}} }

// Get reads a row as the transaction sees it.
func (tx *Tx) Get(id int) (Article, bool) {
	if a, ok := tx.writes[id]; ok {
		return a, true
	}
	return tx.db.Get(id)
}

// Put buffers a write.
func (tx *Tx) Put(a Article) { tx.writes[a.ID] = a }

// AfterCommit registers f to run once the transaction has committed. It
// never runs if the transaction rolls back.
func (tx *Tx) AfterCommit(f func()) { tx.afterCommit = append(tx.afterCommit, f) }

// Commit makes the writes visible, then runs the AfterCommit functions.
func (tx *Tx) Commit() error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	if tx.db.beforeApply != nil {
		tx.db.beforeApply()
	}
	tx.db.mu.Lock()
	for id, a := range tx.writes {
		tx.db.rows[id] = a
	}
	tx.db.mu.Unlock()
	for _, f := range tx.afterCommit {
		f()
	}
	return nil
}

// Rollback discards the writes; after Commit it does nothing, so it can
// be deferred.
func (tx *Tx) Rollback() {
	if !tx.done {
		tx.done = true
		tx.writes, tx.afterCommit = nil, nil
	}
}
