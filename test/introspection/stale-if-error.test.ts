import t from 'tap';
import { cacheKey, IntrospectionCache } from '../../src/introspection/cache.js';
import { Introspector, type Endpoint } from '../../src/introspection/introspector.js';
import type { IntrospectionResult } from '../../src/introspection/result.js';

/** An endpoint that answers whatever `next` says at the moment of the call. */
class ScriptedEndpoint implements Endpoint {
  readonly name = 'as';
  readonly staleIfError: number;
  next: IntrospectionResult;
  calls = 0;
  constructor(staleIfError: number, next: IntrospectionResult) {
    this.staleIfError = staleIfError;
    this.next = next;
  }
  async introspect(): Promise<IntrospectionResult> {
    this.calls += 1;
    return this.next;
  }
}

const START = 1_700_000_000_000;
const TTL_S = 60;

const active = (sub: string, exp: number | null = null): IntrospectionResult => ({
  outcome: 'active',
  claims: Object.freeze(Object.assign(Object.create(null), { active: true, sub })),
  expiresAt: exp,
});
const DOWN: IntrospectionResult = { outcome: 'error', detail: 'connection refused' };
const signal = () => new AbortController().signal;

function setup(staleIfError: number, first: IntrospectionResult) {
  const clock = { now: START };
  const time = { now: () => clock.now };
  const cache = new IntrospectionCache({ maxEntries: 100, ttlSeconds: TTL_S, clock: time });
  const stale: string[] = [];
  const introspector = new Introspector(cache, { clock: time, onStale: (name) => stale.push(name) });
  const endpoint = new ScriptedEndpoint(staleIfError, first);
  const ask = (token = 'tok') => introspector.introspect(endpoint, token, signal());
  return { clock, cache, introspector, endpoint, stale, ask };
}

t.test('the window opens only on failure: a working endpoint is asked and its answer wins', async (t) => {
  const { clock, endpoint, ask, stale } = setup(300, active('alice'));
  t.equal((await ask()).cache, 'miss');
  clock.now = START + TTL_S * 1000 + 1;
  endpoint.next = active('alice-2');
  const renewed = await ask();
  t.equal(renewed.cache, 'miss', 'an expired answer is not served while the endpoint answers');
  t.equal(renewed.result.outcome === 'active' && renewed.result.claims.sub, 'alice-2');

  clock.now += TTL_S * 1000 + 1;
  endpoint.next = { outcome: 'inactive' };
  const revoked = await ask();
  t.equal(revoked.result.outcome, 'inactive', 'an inactive answer from the endpoint is never overridden by a stale one');
  t.same(stale, []);
});

t.test('every failure kind opens it: error, timeout, circuit open, bad response', async (t) => {
  for (const failure of [
    DOWN,
    { outcome: 'timeout', detail: 'slow' },
    { outcome: 'circuit_open', detail: 'open' },
    { outcome: 'bad_response', detail: 'the endpoint answered HTTP 503' },
  ] as IntrospectionResult[]) {
    const { clock, endpoint, ask, stale } = setup(300, active('alice'));
    await ask();
    clock.now = START + TTL_S * 1000;
    endpoint.next = failure;
    const answer = await ask();
    t.equal(answer.cache, 'stale', failure.outcome);
    t.equal(answer.result.outcome === 'active' && answer.result.claims.sub, 'alice');
    t.same(stale, ['as']);
  }
});

t.test('off (0) by default: a failure after expiry is a failure', async (t) => {
  const { clock, endpoint, ask } = setup(0, active('alice'));
  await ask();
  clock.now = START + TTL_S * 1000;
  endpoint.next = DOWN;
  t.equal((await ask()).result.outcome, 'error');
});

t.test('the window closes at its end', async (t) => {
  const { clock, endpoint, ask } = setup(30, active('alice'));
  await ask();
  endpoint.next = DOWN;
  clock.now = START + (TTL_S + 29) * 1000;
  t.equal((await ask()).cache, 'stale', 'inside the window');
  clock.now = START + (TTL_S + 30) * 1000;
  const after = await ask();
  t.equal(after.result.outcome, 'error', 'at its end');
  t.equal(after.cache, 'miss');
});

t.test("the window closes at the token's exp, however long staleIfError is", async (t) => {
  const exp = START + (TTL_S + 10) * 1000;
  const { clock, endpoint, ask } = setup(3600, active('alice', exp));
  await ask();
  endpoint.next = DOWN;
  clock.now = START + TTL_S * 1000;
  t.equal((await ask()).cache, 'stale');
  clock.now = exp;
  t.equal((await ask()).result.outcome, 'error', 'never at or past exp');
});

t.test('an answer cut short by exp has no window at all', async (t) => {
  const exp = START + 10_000;
  const { clock, endpoint, ask } = setup(3600, active('alice', exp));
  await ask();
  endpoint.next = DOWN;
  clock.now = exp;
  t.equal((await ask()).result.outcome, 'error');
});

t.test('an admin eviction closes it, even one made during the failing call', async (t) => {
  const { clock, endpoint, ask, introspector } = setup(300, active('alice'));
  await ask();
  clock.now = START + TTL_S * 1000;
  endpoint.next = DOWN;
  introspector.evict(['as'], 'tok');
  t.equal((await ask()).result.outcome, 'error', 'evicted before the call');

  // Filled again, expired, then evicted while the failing call is under way.
  endpoint.next = active('alice');
  await ask();
  clock.now += TTL_S * 1000;
  let release!: (result: IntrospectionResult) => void;
  endpoint.introspect = () => new Promise((resolve) => (release = resolve));
  const pending = ask();
  await new Promise((resolve) => setImmediate(resolve));
  introspector.evict(['as'], 'tok');
  release(DOWN);
  t.equal((await pending).result.outcome, 'error', 'evicted while the call was under way');
});

t.test('evicting everything closes every window', async (t) => {
  const { clock, endpoint, ask, introspector } = setup(300, active('alice'));
  await ask('a');
  await ask('b');
  clock.now = START + TTL_S * 1000;
  endpoint.next = DOWN;
  introspector.clear();
  t.equal((await ask('a')).result.outcome, 'error');
  t.equal((await ask('b')).result.outcome, 'error');
});

t.test('a reload that changes the endpoint (retainEndpoints) closes it', async (t) => {
  const { clock, endpoint, ask, cache } = setup(300, active('alice'));
  await ask();
  clock.now = START + TTL_S * 1000;
  endpoint.next = DOWN;
  cache.retainEndpoints(new Set(['another-cache-id']));
  t.equal((await ask()).result.outcome, 'error');
});

t.test('an inactive answer is never served stale', async (t) => {
  const clock = { now: START };
  const time = { now: () => clock.now };
  const cache = new IntrospectionCache({ maxEntries: 100, ttlSeconds: TTL_S, maxNegativeEntries: 10, negativeTtlSeconds: 5, clock: time });
  const introspector = new Introspector(cache, { clock: time });
  const endpoint = new ScriptedEndpoint(300, { outcome: 'inactive' });
  t.equal((await introspector.introspect(endpoint, 'tok', signal())).cache, 'miss');
  clock.now += 5000;
  endpoint.next = DOWN;
  t.equal((await introspector.introspect(endpoint, 'tok', signal())).result.outcome, 'error');
});

t.test('a flapping endpoint: each success renews what a later failure may serve, each failure serves the latest', async (t) => {
  const { clock, endpoint, ask, stale } = setup(120, active('v1'));
  await ask();
  const subs: unknown[] = [];
  // Down, up with a new answer, down again, for 6 rounds of one TTL each.
  for (let round = 1; round <= 6; round++) {
    clock.now = START + round * TTL_S * 1000;
    endpoint.next = round % 2 === 1 ? DOWN : active(`v${round}`);
    const answer = await ask();
    subs.push(answer.result.outcome === 'active' ? `${answer.cache}:${String(answer.result.claims.sub)}` : answer.result.outcome);
  }
  t.same(subs, ['stale:v1', 'miss:v2', 'stale:v2', 'miss:v4', 'stale:v4', 'miss:v6']);
  t.equal(stale.length, 3);
  // Down for good: served until TTL + 120 s past the last good answer, then not.
  endpoint.next = DOWN;
  clock.now = START + 7 * TTL_S * 1000 + 119_000;
  t.equal((await ask()).cache, 'stale');
  clock.now = START + 7 * TTL_S * 1000 + 120_000;
  t.equal((await ask()).result.outcome, 'error');
});

t.test('a caller whose deadline fires gets the stale answer, not a timeout', async (t) => {
  const { clock, endpoint, introspector, ask } = setup(300, active('alice'));
  await ask();
  clock.now = START + TTL_S * 1000;
  endpoint.introspect = () => new Promise(() => {});
  const controller = new AbortController();
  const pending = introspector.introspect(endpoint, 'tok', controller.signal);
  controller.abort();
  const answer = await pending;
  t.equal(answer.cache, 'stale');
});

t.test('a stale-window entry is not a hit: the cache still reports it as absent', async (t) => {
  const { clock, ask, cache } = setup(300, active('alice'));
  await ask();
  clock.now = START + TTL_S * 1000;
  t.equal(cache.get(cacheKey('as', 'tok'), null, 300_000), undefined);
});
