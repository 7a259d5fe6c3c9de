package pgqrs

import (
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"time"
)

// The conformance cases of signalRepo (see conformance_test.go), kept
// beside the signal tests; they join repoCases before any test runs.
func init() { maps.Copy(repoCases, signalRepoCases) }

// delayedRun creates a run of wf whose message waits an hour, as a
// suspended run's does.
func (e *repoEnv) delayedRun(wf workflowRef, q *Queue) (run, msg int64) {
	e.t.Helper()
	msg = e.enqueueAfter(q, `{}`, time.Hour)
	run, err := e.s.runs.insert(e.ctx, e.q, wf.id, msg, []byte(`{}`), 0, "", 0)
	e.must(err, "insert run")
	return run, msg
}

func (e *repoEnv) send(run int64, topic, payload string) (int64, bool) {
	e.t.Helper()
	id, waiting, err := e.s.signals.send(e.ctx, e.q, run, topic, json.RawMessage(payload))
	e.must(err, "send")
	return id, waiting
}

func (e *repoEnv) signals(run int64) []SignalInfo {
	e.t.Helper()
	out, err := e.s.signals.list(e.ctx, e.q, run)
	e.must(err, "list signals")
	return out
}

var signalRepoCases = map[string]repoCase{
	"signalRepo.send": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		a, waiting := e.send(run, "t", `{"n": 1}`)
		e.equal("waiting before any Recv", waiting, false)
		_, _, err := e.s.signals.wait(e.ctx, e.q, run, "recv", "t", time.Hour)
		e.must(err, "wait")
		_, waiting = e.send(run, "other", `2`)
		e.equal("waiting on another topic", waiting, false)
		b, waiting := e.send(run, "t", `3`)
		e.equal("waiting on the topic", waiting, true)
		if b <= a {
			e.t.Errorf("signal IDs %d then %d: not in send order", a, b)
		}
		e.stepDone(run, step("recv", 0, `1`, 1))
		_, waiting = e.send(run, "t", `4`)
		e.equal("waiting after the Recv step was recorded", waiting, false)
		_, _, err = e.s.signals.send(e.ctx, e.q, run+1000, "t", json.RawMessage(`1`))
		e.isErr(err, errForeignKey, "a signal to an unknown run")
	}},
	"signalRepo.wake": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		c := e.worker("c", q, "consumer")
		waiting, msg := e.delayedRun(wf, q)
		got, err := e.s.signals.wake(e.ctx, e.q, waiting)
		e.must(err, "wake")
		e.equal("queue", got, q.ID)
		e.equal("claimable", e.claimIDs(q, c, 10), []int64{msg})
		_, err = e.s.signals.wake(e.ctx, e.q, waiting)
		e.noRows(err, "wake of a held message")
		_, err = e.s.signals.wake(e.ctx, e.q, waiting+1000)
		e.noRows(err, "wake of an unknown run")
	}},
	"signalRepo.wakeSignalled": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		c := e.worker("c", q, "consumer")
		run, msg := e.delayedRun(wf, q)
		e.send(run, "other", `1`)
		_, err := e.s.signals.wakeSignalled(e.ctx, e.q, run, "t")
		e.noRows(err, "no signal on the topic")
		e.send(run, "t", `1`)
		got, err := e.s.signals.wakeSignalled(e.ctx, e.q, run, "t")
		e.must(err, "wake")
		e.equal("queue", got, q.ID)
		e.equal("claimable", e.claimIDs(q, c, 10), []int64{msg})
		_, err = e.s.signals.wakeSignalled(e.ctx, e.q, run, "t")
		e.noRows(err, "a held message")
	}},
	"signalRepo.claim": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		_, _, err := e.s.signals.claim(e.ctx, e.q, run, "t", "r0")
		e.noRows(err, "claim with nothing sent")
		a, _ := e.send(run, "t", `{"n": 1}`)
		e.send(run, "other", `0`)
		b, _ := e.send(run, "t", `2`)
		for i, want := range []int64{a, b} {
			id, payload, err := e.s.signals.claim(e.ctx, e.q, run, "t", []string{"r0", "r1"}[i])
			e.must(err, "claim")
			e.equal("claimed", id, want)
			if i == 0 && !sameJSON(payload, []byte(`{"n":1}`)) {
				e.t.Errorf("payload = %s", payload)
			}
		}
		_, _, err = e.s.signals.claim(e.ctx, e.q, run, "t", "r2")
		e.noRows(err, "claim after all were received")
		sigs := e.signals(run)
		if len(sigs) != 3 || sigs[0].ReceivedBy != "r0" || sigs[1].ReceivedBy != "" || sigs[2].ReceivedBy != "r1" {
			e.t.Errorf("signals = %+v", sigs)
		}
		if len(sigs) == 3 {
			e.recent("ReceivedAt", sigs[0].ReceivedAt)
		}
	}},
	"signalRepo.wait": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		until, due, err := e.s.signals.wait(e.ctx, e.q, run, "r", "t", time.Hour)
		e.must(err, "wait")
		e.equal("due", due, false)
		e.recent("until - 1h", until.Add(-time.Hour))
		again, due, err := e.s.signals.wait(e.ctx, e.q, run, "r", "t", time.Second)
		e.must(err, "wait again")
		e.equal("due", due, false)
		e.equal("the first call's deadline stands", again, until)
		_, due, err = e.s.signals.wait(e.ctx, e.q, run, "now", "t", 0)
		e.must(err, "wait of 0")
		e.equal("due after 0", due, true)
		e.stepDone(run, step("r", 0, `1`, 1))
		_, _, err = e.s.signals.wait(e.ctx, e.q, run, "r", "t", time.Hour)
		e.noRows(err, "wait of a recorded step")
	}},
	"signalRepo.list": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		e.equal("no signals", e.signals(run), []SignalInfo{})
		a, _ := e.send(run, "b", `1`)
		b, _ := e.send(run, "a", `"x"`)
		sigs := e.signals(run)
		if len(sigs) != 2 || sigs[0].ID != a || sigs[1].ID != b || sigs[0].Topic != "b" || !sameJSON(sigs[1].Payload, []byte(`"x"`)) ||
			!sigs[0].ReceivedAt.IsZero() || sigs[0].ReceivedBy != "" {
			e.t.Fatalf("signals = %+v", sigs)
		}
		e.recent("SentAt", sigs[0].SentAt)
	}},
	"signalRepo.waits": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		got, err := e.s.signals.waits(e.ctx, e.q, run)
		e.must(err, "waits")
		e.equal("no waits", got, []SignalWait{})
		later, _, _ := e.s.signals.wait(e.ctx, e.q, run, "later", "a", time.Hour)
		sooner, _, _ := e.s.signals.wait(e.ctx, e.q, run, "sooner", "b", time.Minute)
		_, _, err = e.s.signals.wait(e.ctx, e.q, run, "done", "c", time.Second)
		e.must(err, "wait")
		e.stepDone(run, step("done", 0, `1`, 1))
		got, err = e.s.signals.waits(e.ctx, e.q, run)
		e.must(err, "waits")
		e.equal("pending waits", got, []SignalWait{{Step: "sooner", Topic: "b", Until: sooner}, {Step: "later", Topic: "a", Until: later}})
	}},
	"signalRepo.setEvent": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		e.must(e.s.signals.setEvent(e.ctx, e.q, run, "k", json.RawMessage(`1`)), "set")
		e.must(e.s.signals.setEvent(e.ctx, e.q, run, "k", json.RawMessage(`{"v": 2}`)), "set again")
		ev, err := e.s.signals.getEvent(e.ctx, e.q, run, "k")
		e.must(err, "get")
		if !sameJSON(ev.Value, []byte(`{"v":2}`)) {
			e.t.Errorf("the last value does not win: %s", ev.Value)
		}
		e.isErr(e.s.signals.setEvent(e.ctx, e.q, run+1000, "k", json.RawMessage(`1`)), errForeignKey, "an event of an unknown run")
	}},
	"signalRepo.getEvent": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		_, err := e.s.signals.getEvent(e.ctx, e.q, run, "k")
		e.noRows(err, "an unset event")
		e.must(e.s.signals.setEvent(e.ctx, e.q, run, "k", json.RawMessage(`"v"`)), "set")
		ev, err := e.s.signals.getEvent(e.ctx, e.q, run, "k")
		e.must(err, "get")
		if ev.Key != "k" || !sameJSON(ev.Value, []byte(`"v"`)) {
			e.t.Errorf("event = %+v", ev)
		}
		e.recent("UpdatedAt", ev.UpdatedAt)
	}},
	"signalRepo.events": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		run, _ := e.run(wf, q, `1`)
		got, err := e.s.signals.events(e.ctx, e.q, run)
		e.must(err, "events")
		e.equal("no events", got, []EventInfo{})
		e.must(e.s.signals.setEvent(e.ctx, e.q, run, "b", json.RawMessage(`2`)), "set")
		e.must(e.s.signals.setEvent(e.ctx, e.q, run, "a", json.RawMessage(`1`)), "set")
		got, err = e.s.signals.events(e.ctx, e.q, run)
		e.must(err, "events")
		if len(got) != 2 || got[0].Key != "a" || got[1].Key != "b" || !sameJSON(got[1].Value, []byte(`2`)) {
			e.t.Errorf("events = %+v", got)
		}
		// Deleting the run deletes its signals, waits and events.
		e.send(run, "t", `1`)
		e.end(run, RunSucceeded)
		e.must(e.s.runs.deleteWorkflow(e.ctx, e.q, wf.id), "delete workflow")
		_, err = e.s.signals.getEvent(e.ctx, e.q, run, "a")
		if !errors.Is(err, sql.ErrNoRows) {
			e.t.Errorf("an event of a deleted run: %v", err)
		}
		e.equal("signals of a deleted run", e.signals(run), []SignalInfo{})
	}},
}
