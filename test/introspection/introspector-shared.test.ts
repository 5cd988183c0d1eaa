// The introspector with a shared (L2) tier, against an in-memory stand-in:
// asked on an in-process miss before the endpoint, filled after an answer with
// the in-process TTL rules, and any failure of it reads as a miss.
import t from 'tap';
import { IntrospectionCache } from '../../src/introspection/cache.js';
import { Introspector, type Endpoint, type SharedCache } from '../../src/introspection/introspector.js';
import type { IntrospectionResult } from '../../src/introspection/result.js';
import type { SharedEntry } from '../../src/introspection/sealed-entry.js';

let now = 1_700_000_000_000;
const clock = { now: () => now };

class MemoryShared implements SharedCache {
  readonly entries = new Map<string, SharedEntry>();
  readonly evicted: string[][] = [];
  evictedAll = 0;
  fail = false;
  /** set() throws, as a tier that breaks its "never throws" promise would. */
  failSet = false;
  gets = 0;
  key(cacheId: string, token: string): string {
    return `${cacheId}|${token}`;
  }
  async get(key: string): Promise<SharedEntry | undefined> {
    this.gets += 1;
    if (this.fail) throw new Error('down');
    return this.entries.get(key);
  }
  set(key: string, _cacheId: string, _token: string, entry: SharedEntry): void {
    if (this.failSet) throw new RangeError('Maximum call stack size exceeded');
    this.entries.set(key, entry);
  }
  async evict(keys: readonly string[]): Promise<boolean> {
    this.evicted.push([...keys]);
    for (const key of keys) this.entries.delete(key);
    return true;
  }
  async evictAll(): Promise<boolean> {
    this.evictedAll += 1;
    return true;
  }
}

function endpoint(answer: (token: string) => IntrospectionResult, clientIdHeader: string | null = null) {
  const calls: string[] = [];
  const ep: Endpoint = {
    name: 'as',
    clientIdHeader,
    async introspect(token: string) {
      calls.push(token);
      return answer(token);
    },
  };
  return { ep, calls };
}

function setup(options: { ttl?: number; negativeTtl?: number } = {}) {
  const shared = new MemoryShared();
  const cache = new IntrospectionCache({
    maxEntries: 100,
    ttlSeconds: options.ttl ?? 600,
    maxNegativeEntries: 100,
    negativeTtlSeconds: options.negativeTtl ?? 10,
    clock,
  });
  return { shared, cache, introspector: new Introspector(cache, { shared, clock }) };
}

const signal = () => new AbortController().signal;
const ACTIVE = (exp: number | null = null): IntrospectionResult => ({ outcome: 'active', claims: { sub: 'alice' }, expiresAt: exp });

t.test('an answer fills both tiers; a second replica reads it from the shared one', async (t) => {
  const a = setup();
  const { ep, calls } = endpoint(() => ACTIVE(now + 100_000));
  const first = await a.introspector.introspect(ep, 'tok', signal());
  t.equal(first.result.outcome, 'active');
  t.equal(calls.length, 1);
  const stored = a.shared.entries.get('as|tok');
  t.same(
    stored,
    { active: true, claims: { sub: 'alice' }, tokenExpiresAt: now + 100_000, expiresAt: now + 100_000, writtenAt: now },
    'TTL = min(ttl, exp - now)',
  );

  // A second replica: own in-process cache, same shared tier.
  const cache = new IntrospectionCache({ maxEntries: 100, ttlSeconds: 600, clock });
  const b = new Introspector(cache, { shared: a.shared, clock });
  const second = await b.introspect(ep, 'tok', signal());
  t.same(second.result, { outcome: 'active', claims: { sub: 'alice' }, expiresAt: now + 100_000 });
  t.equal(calls.length, 1, 'no second introspection');
  t.equal((await b.introspect(ep, 'tok', signal())).cache, 'hit', 'now in the in-process tier');
  t.equal(a.shared.gets, 2, 'the shared tier was asked once by each replica');
});

t.test('an answer from the shared tier never outlives its entry there', async (t) => {
  const s = setup({ ttl: 600 });
  s.shared.entries.set('as|tok', { active: true, claims: { sub: 'alice' }, tokenExpiresAt: null, expiresAt: now + 5000, writtenAt: now });
  const { ep, calls } = endpoint(() => ACTIVE());
  await s.introspector.introspect(ep, 'tok', signal());
  t.equal(calls.length, 0);
  now += 6000;
  await s.introspector.introspect(ep, 'tok', signal());
  t.equal(calls.length, 1, 'asked again once the shared entry would have ended');
});

t.test('expired shared entries are ignored', async (t) => {
  const s = setup();
  s.shared.entries.set('as|tok', { active: true, claims: {}, tokenExpiresAt: null, expiresAt: now - 1, writtenAt: now - 2 });
  const { ep, calls } = endpoint(() => ACTIVE());
  await s.introspector.introspect(ep, 'tok', signal());
  t.equal(calls.length, 1);
});

t.test('inactive answers are shared with the negative TTL', async (t) => {
  const s = setup({ negativeTtl: 10 });
  const { ep, calls } = endpoint(() => ({ outcome: 'inactive' }));
  await s.introspector.introspect(ep, 'bad', signal());
  t.same(s.shared.entries.get('as|bad'), { active: false, expiresAt: now + 10_000, writtenAt: now });
  const other = new Introspector(new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, maxNegativeEntries: 10, negativeTtlSeconds: 10, clock }), {
    shared: s.shared,
    clock,
  });
  const answer = await other.introspect(ep, 'bad', signal());
  t.equal(answer.result.outcome, 'inactive');
  t.equal(calls.length, 1);
  t.equal((await other.introspect(ep, 'bad', signal())).cache, 'negative_hit');
});

t.test('nothing is shared when the in-process tier would not keep it', async (t) => {
  const s = setup({ ttl: 0, negativeTtl: 0 });
  const { ep } = endpoint((token) => (token === 'ok' ? ACTIVE() : { outcome: 'inactive' }));
  await s.introspector.introspect(ep, 'ok', signal());
  await s.introspector.introspect(ep, 'bad', signal());
  const expired = endpoint(() => ACTIVE(now - 1));
  await s.introspector.introspect(expired.ep, 'old', signal());
  const failing = endpoint(() => ({ outcome: 'error', detail: 'x' }));
  await s.introspector.introspect(failing.ep, 'err', signal());
  t.equal(s.shared.entries.size, 0);
});

t.test('a failing shared tier reads as a miss', async (t) => {
  const s = setup();
  s.shared.fail = true;
  const { ep, calls } = endpoint(() => ACTIVE());
  const answer = await s.introspector.introspect(ep, 'tok', signal());
  t.equal(answer.result.outcome, 'active');
  t.equal(calls.length, 1);
});

t.test('a shared tier that throws on a write: the answer stands, kept here, nothing left unhandled', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));
  const s = setup();
  s.shared.failSet = true;
  const { ep, calls } = endpoint(() => ACTIVE(now + 100_000));
  const [first, second] = await Promise.all([
    s.introspector.introspect(ep, 'tok', signal()),
    s.introspector.introspect(ep, 'tok', signal()),
  ]);
  t.same([first.result.outcome, first.cache], ['active', 'miss']);
  t.same([second.result.outcome, second.cache], ['active', 'coalesced'], 'every waiter of the call gets the answer');
  t.equal((await s.introspector.introspect(ep, 'tok', signal())).cache, 'hit', 'kept in the in-process tier, and the flight is gone');
  t.equal(calls.length, 1);
  t.equal(s.shared.entries.size, 0);
  // Rejections are reported after the microtask queue drains: give them that turn.
  await new Promise((resolve) => setImmediate(resolve));
  t.same(unhandled, [], 'no unhandled rejection');
});

t.test('answers asked with a client id stay out of the shared tier', async (t) => {
  const s = setup();
  const { ep, calls } = endpoint(() => ACTIVE(), 'x-client-id');
  const headers = new Map([['x-client-id', ['app']]]);
  await s.introspector.introspect(ep, 'tok', signal(), headers);
  t.equal(calls.length, 1);
  t.equal(s.shared.gets, 0);
  t.equal(s.shared.entries.size, 0);
});

t.test('evictions go to the shared tier; remote ones drop only here', async (t) => {
  const s = setup();
  const { ep, calls } = endpoint(() => ACTIVE());
  await s.introspector.introspect(ep, 'tok', signal());
  t.equal(s.introspector.evict(['as'], 'tok').evicted, 1);
  t.same(s.shared.evicted, [['as|tok']]);
  t.equal(s.shared.entries.size, 0);
  t.equal(s.introspector.clear().evicted, 0);
  t.equal(s.shared.evictedAll, 1);

  await s.introspector.introspect(ep, 'tok', signal());
  t.equal(calls.length, 2);
  t.equal(s.introspector.dropKeys(['as|tok', 'as|other']), 1, 'a remote eviction');
  t.equal(s.shared.evicted.length, 1, 'not sent back out');
  await s.introspector.introspect(ep, 'tok', signal());
  t.equal(s.introspector.clearLocal(), 1);
  t.equal(s.shared.evictedAll, 1);
});

t.test('an eviction during a shared lookup keeps its answer out of the in-process tier', async (t) => {
  const s = setup();
  s.shared.entries.set('as|tok', { active: true, claims: {}, tokenExpiresAt: null, expiresAt: now + 5000, writtenAt: now });
  const { ep } = endpoint(() => ACTIVE());
  const pending = s.introspector.introspect(ep, 'tok', signal());
  s.introspector.dropKeys(['as|tok']);
  t.equal((await pending).result.outcome, 'active');
  t.equal(s.cache.size, 0);
});

t.test('a shared entry carries the time its call started, not the time it ended', async (t) => {
  const s = setup();
  const started = now;
  let answer!: (result: IntrospectionResult) => void;
  const ep: Endpoint = { name: 'as', introspect: () => new Promise((resolve) => (answer = resolve)) };
  const pending = s.introspector.introspect(ep, 'tok', signal());
  await new Promise((resolve) => setImmediate(resolve));
  now += 2500;
  answer(ACTIVE());
  await pending;
  t.equal(s.shared.entries.get('as|tok')?.writtenAt, started, 'an eviction during the call refuses it');
  t.equal(s.shared.entries.get('as|tok')?.expiresAt, now + 600_000, 'its lifetime runs from the answer');
});
