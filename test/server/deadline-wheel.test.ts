import t from 'tap';
import { ANSWER_COST_PRIOR_MS, DeadlineWheel, SLOT_MS } from '../../src/server/deadline-wheel.js';

t.test('Checks due together fire in one tick, early by what answering all of them costs', async (t) => {
  const wheel = new DeadlineWheel();
  const abortAt = Date.now() + 400;
  const fired: number[] = [];
  let firedBeforeNextTurn = -1;
  const done = new Promise<void>((resolve) => {
    for (let i = 0; i < 200; i += 1) {
      wheel.add(abortAt, () => {
        if (fired.length === 0) setImmediate(() => (firedBeforeNextTurn = fired.length));
        fired.push(i);
        if (fired.length === 200) resolve();
      });
    }
  });
  const planned = wheel.plannedFor(abortAt)!;
  // Without timers: the plan is early by at least the prior cost of 200 answers, and by the lag on top.
  // (less 1 ms: the timer is moved only when the plan gets at least 1 ms earlier)
  t.ok(planned <= abortAt - 200 * ANSWER_COST_PRIOR_MS + 1, `planned ${abortAt - planned} ms early for 200 Checks`);
  const one = new DeadlineWheel();
  one.add(abortAt, () => {});
  t.ok(planned < one.plannedFor(abortAt)!, 'earlier than for a single Check due then');
  t.ok(one.plannedFor(abortAt)! <= abortAt && one.plannedFor(abortAt)! > abortAt - SLOT_MS - 2 * 60 - 1, 'a single Check: about its own time');
  await done;
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(firedBeforeNextTurn, 200, 'all 200 answered before the event loop moved on');
  t.equal(wheel.pending, 0);
});

t.test('a firing slot takes along the next slots its own work reaches into', async (t) => {
  const wheel = new DeadlineWheel();
  const base = Date.now() + 300;
  const order: string[] = [];
  let atNextTurn = -1;
  const done = new Promise<void>((resolve) => {
    // 300 Checks at `base`: at the prior cost their answers take 75 ms, so Checks
    // due 10 ms later would be answered late if they waited for their own timer.
    for (let i = 0; i < 300; i += 1) {
      wheel.add(base, () => {
        if (order.length === 0) setImmediate(() => (atNextTurn = order.length));
        order.push('first');
      });
    }
    wheel.add(base + 10, () => {
      order.push('next');
      resolve();
    });
  });
  await done;
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(atNextTurn, 301, 'the Check due 10 ms later fired in the same tick');
  t.equal(order.at(-1), 'next', 'after those due first');
});

t.test('a removed Check never fires; an emptied slot leaves no timer behind', async (t) => {
  const wheel = new DeadlineWheel();
  let fired = 0;
  const entries = Array.from({ length: 3 }, () => wheel.add(Date.now() + 50, () => (fired += 1)));
  for (const entry of entries) wheel.remove(entry);
  wheel.remove(entries[0]!);
  t.equal(wheel.pending, 0);
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.equal(fired, 0);
});

t.test('the lag it counts is bounded', async (t) => {
  const wheel = new DeadlineWheel();
  t.ok(wheel.lagMs() >= 0);
  const until = Date.now() + 150;
  while (Date.now() < until); // block the loop well past the bound
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.ok(wheel.lagMs() <= 60, `at most 60 ms (read ${wheel.lagMs().toFixed(1)})`);
});
