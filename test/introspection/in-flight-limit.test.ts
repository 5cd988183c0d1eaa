// The bound on calls in flight: slots, a first-come-first-served queue with a
// time limit, and the caller's signal.
import t from 'tap';
import { InFlightLimit, type Acquired } from '../../src/introspection/in-flight-limit.js';

function granted(result: Acquired): () => void {
  if (!result.ok) throw new Error(`expected a slot, got ${result.reason}`);
  return result.release;
}

t.test('up to max at once, at once', async (t) => {
  const limit = new InFlightLimit(2, 50);
  const a = granted(await limit.acquire());
  granted(await limit.acquire());
  t.equal(limit.inFlight, 2);
  a();
  a(); // twice is harmless
  t.equal(limit.inFlight, 1, 'one slot freed, once');
});

t.test('beyond max: waits, and gets the first slot freed', async (t) => {
  const limit = new InFlightLimit(1, 1_000);
  const first = granted(await limit.acquire());
  const order: string[] = [];
  const second = Promise.resolve(limit.acquire()).then((r) => (order.push('second'), r));
  const third = Promise.resolve(limit.acquire()).then((r) => (order.push('third'), r));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(limit.waiting, 2);
  t.same(order, [], 'nobody got a slot yet');
  first();
  const releaseSecond = granted(await second);
  t.same(order, ['second'], 'first come, first served');
  t.equal(limit.inFlight, 1, 'the slot was handed over, not freed');
  releaseSecond();
  granted(await third)();
  t.same(order, ['second', 'third']);
  t.equal(limit.inFlight, 0);
  t.equal(limit.waiting, 0);
});

t.test('a wait longer than queueTimeout: busy', async (t) => {
  const limit = new InFlightLimit(1, 40);
  granted(await limit.acquire());
  const started = Date.now();
  const result = await limit.acquire();
  const waited = Date.now() - started;
  t.same(result, { ok: false, reason: 'busy' });
  t.ok(waited >= 35 && waited < 500, `gave up after ${waited} ms`);
  t.equal(limit.waiting, 0, 'left the queue');
});

t.test('queueTimeout 0: busy at once', async (t) => {
  const limit = new InFlightLimit(1, 0);
  granted(await limit.acquire());
  t.same(limit.acquire(), { ok: false, reason: 'busy' });
});

t.test('the caller signal ends the wait; an aborted signal gets nothing', async (t) => {
  const limit = new InFlightLimit(1, 10_000);
  const release = granted(await limit.acquire());
  const controller = new AbortController();
  const waiting = limit.acquire(controller.signal);
  setTimeout(() => controller.abort(), 20);
  const started = Date.now();
  t.same(await waiting, { ok: false, reason: 'aborted' });
  t.ok(Date.now() - started < 1_000, 'promptly');
  t.equal(limit.waiting, 0);
  t.same(limit.acquire(AbortSignal.abort()), { ok: false, reason: 'aborted' });
  release();
  t.equal(limit.inFlight, 0, 'the abandoned waiter took no slot');
});
