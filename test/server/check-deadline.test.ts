import t from 'tap';
import { EventEmitter } from 'node:events';
import { CheckDeadline, DEADLINE_MARGIN_MS } from '../../src/server/check-deadline.js';
import { DEADLINE_REACHED } from '../../src/introspection/introspector.js';
import { LAG_MAX_MS, SLOT_MS } from '../../src/server/deadline-wheel.js';

/** The part of a grpc-js call the deadline reads, with a deadline `ms` from now (Infinity: none). */
function fakeCall(ms: number) {
  const events = new EventEmitter();
  const call = {
    cancelled: false,
    getDeadline: () => (ms === Infinity ? Infinity : new Date(Date.now() + ms)),
    on: (event: 'cancelled', listener: () => void) => events.on(event, listener),
    removeListener: (event: 'cancelled', listener: () => void) => events.removeListener(event, listener),
    cancel() {
      call.cancelled = true;
      events.emit('cancelled');
    },
    listeners: () => events.listenerCount('cancelled'),
  };
  return call;
}

t.test('nothing is made until something waits on it', async (t) => {
  const call = fakeCall(1_000);
  const deadline = new CheckDeadline(call);
  t.equal(call.listeners(), 0, 'no cancelled listener yet');
  deadline.dispose();
  t.equal(call.listeners(), 0);
});

t.test('fires a margin before the deadline: a fifth of the time left, at most DEADLINE_MARGIN_MS', async (t) => {
  for (const [ms, expected] of [
    [100, 80],
    [500, 500 - DEADLINE_MARGIN_MS],
  ] as const) {
    const call = fakeCall(ms);
    const deadline = new CheckDeadline(call);
    const started = Date.now();
    await new Promise<void>((resolve) => deadline.addEventListener('abort', () => resolve(), { once: true }));
    const took = Date.now() - started;
    // Early at most by a slot and the bounded lag allowance; late only by the machine's
    // timer lag (the margin itself is checked without timers below).
    const earliest = expected - SLOT_MS - 2 * LAG_MAX_MS - 5;
    t.ok(took >= earliest && took < expected + 1_000, `deadline ${ms} ms: fired after ${took} ms (expected ~${expected})`);
    t.equal(deadline.aborted, true);
    t.equal(deadline.reason, DEADLINE_REACHED, 'and says time ran out');
    deadline.dispose();
    t.equal(call.listeners(), 0, 'listener removed');
  }
});

t.test('the margin, without timers: a call that arrived earlier is read inside its margin', async (t) => {
  // Each call arrived `ago` ms before now with a deadline `left` ms from now: its margin is
  // min(DEADLINE_MARGIN_MS, (ago + left) / 5), so it is already aborted when left < margin.
  const cases: Array<[ago: number, left: number, aborted: boolean]> = [
    [970, 30, true], // 1000 ms budget: margin 50 > 30 left
    [940, 60, false], // margin 50 < 60 left
    [95, 5, true], // 100 ms budget: margin 20 > 5 left
    [70, 30, false], // margin 20 < 30 left
  ];
  for (const [ago, left, aborted] of cases) {
    const call = fakeCall(left);
    const deadline = new CheckDeadline(call, Date.now() - ago);
    t.equal(deadline.aborted, aborted, `arrived ${ago} ms ago, ${left} ms left: ${aborted ? 'aborted' : 'not yet'}`);
    deadline.dispose();
  }
});

t.test('a cancelled call aborts, before or after the signal is made', async (t) => {
  const early = fakeCall(5_000);
  early.cancel();
  const first = new CheckDeadline(early);
  t.equal(first.aborted, true, 'cancelled before anything waited');
  first.dispose();

  const late = fakeCall(5_000);
  const second = new CheckDeadline(late);
  let fired = 0;
  const listener = () => (fired += 1);
  second.addEventListener('abort', listener, { once: true });
  t.equal(second.aborted, false);
  late.cancel();
  t.equal(fired, 1, 'the waiter learns of the cancel');
  t.equal(second.aborted, true);
  t.not(second.reason, DEADLINE_REACHED, 'a cancel is no deadline');
  second.removeEventListener('abort', listener);
  second.dispose();
  t.equal(late.listeners(), 0);
});

t.test('a deadline already past: aborted at once', async (t) => {
  const call = fakeCall(-10);
  const deadline = new CheckDeadline(call);
  t.equal(deadline.aborted, true);
  deadline.dispose();
});

t.test('no deadline: only a cancel aborts', async (t) => {
  const call = fakeCall(Infinity);
  const deadline = new CheckDeadline(call);
  t.equal(deadline.aborted, false);
  deadline.removeEventListener('abort', () => {});
  call.cancel();
  t.equal(deadline.aborted, true);
  deadline.dispose();
});
