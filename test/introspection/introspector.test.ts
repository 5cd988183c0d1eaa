import t from 'tap';
import { cacheKey, IntrospectionCache } from '../../src/introspection/cache.js';
import { DEADLINE_REACHED, Introspector, type Answer, type Endpoint } from '../../src/introspection/introspector.js';
import type { IntrospectionResult } from '../../src/introspection/result.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Call {
  token: string;
  signal: AbortSignal | undefined;
  answer: Deferred<IntrospectionResult>;
  clientId?: string | null;
}

/** An endpoint whose every answer the test gives by hand. */
class FakeEndpoint implements Endpoint {
  readonly name: string;
  readonly calls: Call[] = [];
  constructor(name = 'as') {
    this.name = name;
  }
  introspect(token: string, signal?: AbortSignal, clientId?: string | null): Promise<IntrospectionResult> {
    const answer = deferred<IntrospectionResult>();
    this.calls.push({ token, signal, answer, clientId });
    return answer.promise;
  }
  /** The nth call; fails the test loudly when it was never made. */
  call(index: number): Call {
    const call = this.calls[index];
    if (!call) throw new Error(`the endpoint was called ${this.calls.length} times, not ${index + 1}`);
    return call;
  }
}

const NOW = 1_700_000_000_000;
const clock = { now: () => NOW };

function setup(cacheOptions = { maxEntries: 100, ttlSeconds: 60 }) {
  const cache = new IntrospectionCache({ ...cacheOptions, clock });
  return { cache, introspector: new Introspector(cache), endpoint: new FakeEndpoint() };
}

const active = (sub: string, exp: number | null = null): IntrospectionResult => ({
  outcome: 'active',
  claims: Object.freeze(Object.assign(Object.create(null), { active: true, sub })),
  expiresAt: exp,
});

const signal = () => new AbortController().signal;

/** Resolves with the promise's value, or 'pending' when it has not settled after the current turn's I/O phase. */
async function settledOrPending<T>(promise: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([promise, new Promise<'pending'>((resolve) => setImmediate(() => resolve('pending')))]);
}

// Any unhandled rejection while this file runs fails it.
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);
t.teardown(() => {
  process.off('unhandledRejection', onUnhandled);
});

t.test('an active answer is cached; the next call is a hit', async (t) => {
  const { introspector, endpoint, cache } = setup();
  const first = introspector.introspect(endpoint, 'tok-1', signal());
  t.equal(endpoint.calls.length, 1);
  t.equal(endpoint.call(0).token, 'tok-1', 'the endpoint gets the token');
  endpoint.call(0).answer.resolve(active('alice', NOW + 30_000));
  const a = await first;
  t.equal(a.cache, 'miss');
  t.equal(a.result.outcome, 'active');
  t.equal(cache.size, 1);

  const b = await introspector.introspect(endpoint, 'tok-1', signal());
  t.equal(b.cache, 'hit');
  t.equal(b.result.outcome === 'active' && b.result.claims['sub'], 'alice');
  t.equal(b.result.outcome === 'active' && b.result.expiresAt, NOW + 30_000, 'the cached entry expires with the token');
  t.equal(endpoint.calls.length, 1, 'no second endpoint call');

  const aborted = new AbortController();
  aborted.abort();
  const c = await introspector.introspect(endpoint, 'tok-1', aborted.signal);
  t.equal(c.cache, 'hit', 'a cached answer is served even past the deadline');
});

t.test('inactive answers, failures and rejections are not cached', async (t) => {
  const results: Array<[string, IntrospectionResult | Error]> = [
    ['inactive', { outcome: 'inactive' }],
    ['error', { outcome: 'error', detail: 'ECONNREFUSED' }],
    ['timeout', { outcome: 'timeout', detail: 'slow' }],
    ['bad_response', { outcome: 'bad_response', detail: 'HTTP 500' }],
    ['rejection', new Error('boom')],
  ];
  for (const [name, result] of results) {
    const { introspector, endpoint, cache } = setup();
    const first = introspector.introspect(endpoint, 'tok', signal());
    if (result instanceof Error) endpoint.call(0).answer.reject(result);
    else endpoint.call(0).answer.resolve(result);
    const a = await first;
    t.equal(a.result.outcome, result instanceof Error ? 'error' : result.outcome, `${name}: outcome`);
    t.equal(a.cache, 'miss', `${name}: miss`);
    t.equal(cache.size, 0, `${name}: nothing cached`);

    const second = introspector.introspect(endpoint, 'tok', signal());
    t.equal(endpoint.calls.length, 2, `${name}: asked again`);
    endpoint.call(1).answer.resolve({ outcome: 'inactive' });
    t.equal((await second).cache, 'miss', `${name}: second is a miss too`);
  }
});

t.test('a disabled cache asks every time', async (t) => {
  const { introspector, endpoint } = setup({ maxEntries: 0, ttlSeconds: 60 });
  const first = introspector.introspect(endpoint, 'tok', signal());
  endpoint.call(0).answer.resolve(active('alice'));
  t.equal((await first).cache, 'miss');
  const second = introspector.introspect(endpoint, 'tok', signal());
  t.equal(endpoint.calls.length, 2);
  endpoint.call(1).answer.resolve(active('alice'));
  t.equal((await second).cache, 'miss');
});

t.test('200 concurrent calls for one token share one endpoint call', async (t) => {
  const { introspector, endpoint } = setup();
  const pending = Array.from({ length: 200 }, () => introspector.introspect(endpoint, 'shared', signal()));
  t.equal(endpoint.calls.length, 1, 'exactly one endpoint call');
  t.equal(await settledOrPending(Promise.race(pending)), 'pending', 'nobody answered before the endpoint');
  endpoint.call(0).answer.resolve(active('alice'));
  const answers = await Promise.all(pending);
  t.equal(answers[0]!.cache, 'miss', 'the first caller is the miss');
  t.same(
    answers.slice(1).map((a) => a.cache),
    Array(199).fill('coalesced'),
    'the 199 others are coalesced',
  );
  t.ok(
    answers.every((a) => a.result.outcome === 'active' && a.result.claims['sub'] === 'alice'),
    'everyone gets the answer',
  );
  t.equal(endpoint.calls.length, 1, 'still one call');
  t.equal((await introspector.introspect(endpoint, 'shared', signal())).cache, 'hit', 'then the cache answers');
});

t.test('an inactive answer is shared by concurrent callers but not kept', async (t) => {
  const { introspector, endpoint } = setup();
  const pending = [1, 2, 3].map(() => introspector.introspect(endpoint, 'tok', signal()));
  endpoint.call(0).answer.resolve({ outcome: 'inactive' });
  const answers = await Promise.all(pending);
  t.same(
    answers.map((a) => [a.result.outcome, a.cache]),
    [
      ['inactive', 'miss'],
      ['inactive', 'coalesced'],
      ['inactive', 'coalesced'],
    ],
  );
  const again = introspector.introspect(endpoint, 'tok', signal());
  t.equal(endpoint.calls.length, 2, 'the settled flight is gone');
  endpoint.call(1).answer.resolve({ outcome: 'inactive' });
  t.equal((await again).cache, 'miss');
});

t.test('different tokens and different endpoints get separate calls', async (t) => {
  const { introspector, endpoint } = setup();
  const other = new FakeEndpoint('other-as');
  const a = introspector.introspect(endpoint, 'tok-a', signal());
  const b = introspector.introspect(endpoint, 'tok-b', signal());
  const c = introspector.introspect(other, 'tok-a', signal());
  t.same(
    endpoint.calls.map((call) => call.token),
    ['tok-a', 'tok-b'],
  );
  t.same(
    other.calls.map((call) => call.token),
    ['tok-a'],
  );
  endpoint.call(0).answer.resolve(active('alice'));
  endpoint.call(1).answer.resolve(active('bob'));
  other.call(0).answer.resolve({ outcome: 'inactive' });
  const [ra, rb, rc] = await Promise.all([a, b, c]);
  t.same([ra.cache, rb.cache, rc.cache], ['miss', 'miss', 'miss']);
  t.equal(ra.result.outcome === 'active' && ra.result.claims['sub'], 'alice');
  t.equal(rb.result.outcome === 'active' && rb.result.claims['sub'], 'bob');
  t.equal(rc.result.outcome, 'inactive', "one endpoint's answer never serves another");

  const cached = await introspector.introspect(endpoint, 'tok-a', signal());
  t.equal(cached.cache, 'hit');
  const notShared = introspector.introspect(other, 'tok-a', signal());
  t.equal(other.calls.length, 2, 'the other endpoint is asked, not served from the first one');
  other.call(1).answer.resolve({ outcome: 'inactive' });
  t.equal((await notShared).result.outcome, 'inactive');
});

t.test("a caller whose deadline fires gets a timeout at once; the others still get the answer", async (t) => {
  const { introspector, endpoint } = setup();
  const early = new AbortController();
  const a = introspector.introspect(endpoint, 'tok', early.signal);
  const b = introspector.introspect(endpoint, 'tok', signal());
  early.abort();
  const answer = await settledOrPending(a);
  t.not(answer, 'pending', 'the aborted caller did not wait for the endpoint');
  if (answer !== 'pending') {
    t.equal(answer.result.outcome, 'timeout');
    t.equal(answer.cache, 'miss');
  }
  t.equal(endpoint.call(0).signal?.aborted, false, 'the shared call goes on for the other caller');
  t.equal(await settledOrPending(b), 'pending', 'the other caller still waits');

  endpoint.call(0).answer.resolve(active('alice'));
  const other = await b;
  t.equal(other.result.outcome, 'active');
  t.equal(other.cache, 'coalesced');
  t.equal(endpoint.calls.length, 1);
});

t.test('when every waiter has given up, the endpoint call is aborted', async (t) => {
  const { introspector, endpoint } = setup();
  const controllers = [new AbortController(), new AbortController(), new AbortController()];
  const pending = controllers.map((c) => introspector.introspect(endpoint, 'tok', c.signal));
  const endpointSignal = endpoint.call(0).signal;
  t.ok(endpointSignal, 'the endpoint gets a signal');

  controllers[0]!.abort();
  controllers[1]!.abort();
  await Promise.all([pending[0], pending[1]]);
  t.equal(endpointSignal?.aborted, false, 'not while one caller waits');

  controllers[2]!.abort();
  const answers = await Promise.all(pending);
  t.same(
    answers.map((a) => a.result.outcome),
    ['timeout', 'timeout', 'timeout'],
  );
  t.equal(endpointSignal?.aborted, true, 'aborted once the last waiter left');
  endpoint.call(0).answer.resolve({ outcome: 'timeout', detail: 'aborted' });
});

t.test('the last waiter to leave says why: a deadline is handed on to the endpoint call, a cancel is not', async (t) => {
  for (const [last, expected] of [
    [DEADLINE_REACHED, DEADLINE_REACHED],
    [undefined, 'another reason'],
  ] as const) {
    const { introspector, endpoint } = setup();
    const first = new AbortController();
    const second = new AbortController();
    const pending = [introspector.introspect(endpoint, 'tok', first.signal), introspector.introspect(endpoint, 'tok', second.signal)];
    // The first caller runs out of time while the second still waits: nothing is aborted yet.
    first.abort(DEADLINE_REACHED);
    await pending[0];
    t.equal(endpoint.call(0).signal?.aborted, false, 'one caller leaving while another waits aborts nothing');
    second.abort(last);
    await pending[1];
    const reason = endpoint.call(0).signal?.reason;
    if (expected === DEADLINE_REACHED) t.equal(reason, DEADLINE_REACHED, 'the last waiter ran out of time: the call is told so');
    else t.not(reason, DEADLINE_REACHED, 'the last waiter was cancelled: the call is not told of a deadline');
    endpoint.call(0).answer.resolve({ outcome: 'timeout', detail: 'aborted' });
  }
});

t.test('a caller arriving after an abandoned call was aborted starts a fresh one', async (t) => {
  const { introspector, endpoint } = setup();
  const gone = new AbortController();
  const first = introspector.introspect(endpoint, 'tok', gone.signal);
  gone.abort();
  t.equal((await first).result.outcome, 'timeout');
  t.equal(endpoint.call(0).signal?.aborted, true);

  // The aborted call has not settled yet (undici settles it a little later).
  const late = introspector.introspect(endpoint, 'tok', signal());
  t.equal(endpoint.calls.length, 2, 'the late caller does not join the aborted call');
  endpoint.call(0).answer.resolve({ outcome: 'timeout', detail: 'aborted' });
  endpoint.calls[1]?.answer.resolve(active('alice'));
  const answer = await late;
  t.equal(answer.result.outcome, 'active', 'and gets a real answer');
  t.equal(answer.cache, 'miss');
  const next = await settledOrPending(introspector.introspect(endpoint, 'tok', signal()));
  t.equal(next !== 'pending' && next.cache, 'hit', 'which is cached');
});

t.test('an already aborted caller gets a timeout without an endpoint call', async (t) => {
  const { introspector, endpoint } = setup();
  const controller = new AbortController();
  controller.abort();
  const answer = await introspector.introspect(endpoint, 'tok', controller.signal);
  t.same(answer, { result: { outcome: 'timeout', detail: 'no answer before the deadline' }, cache: 'miss' });
  t.equal(endpoint.calls.length, 0);
});

t.test('an endpoint that throws is an error outcome, never a rejection', async (t) => {
  const rejecting: Endpoint = {
    name: 'rejecting',
    introspect: async () => {
      throw new Error('secret-token-in-message');
    },
  };
  const throwing: Endpoint = {
    name: 'throwing',
    introspect: () => {
      throw new Error('synchronous');
    },
  };
  for (const endpoint of [rejecting, throwing]) {
    const { introspector, cache } = setup();
    const answers = await Promise.all([1, 2].map(() => introspector.introspect(endpoint, 'tok', signal())));
    for (const answer of answers) {
      t.equal(answer.result.outcome, 'error', `${endpoint.name}: outcome`);
      t.notMatch(JSON.stringify(answer), 'secret-token-in-message', `${endpoint.name}: the thrown message stays out`);
    }
    t.equal(cache.size, 0, `${endpoint.name}: nothing cached`);
  }
  await new Promise((resolve) => setImmediate(resolve));
  t.same(unhandled, [], 'no unhandled rejection');
});

t.test('evict drops a cached token at the endpoints named', async (t) => {
  const { introspector, endpoint } = setup();
  const first = introspector.introspect(endpoint, 'tok', signal());
  endpoint.call(0).answer.resolve(active('alice'));
  await first;
  t.equal((await introspector.introspect(endpoint, 'tok', signal())).cache, 'hit');

  t.equal(introspector.evict(['other-as'], 'tok').evicted, 0, 'nothing at another endpoint');
  t.equal(introspector.evict(['as'], 'other-token').evicted, 0, 'nothing for another token');
  t.equal((await introspector.introspect(endpoint, 'tok', signal())).cache, 'hit', 'still cached');

  t.equal(introspector.evict(['other-as', 'as'], 'tok').evicted, 1, 'one entry dropped');
  t.equal(introspector.evict(['as'], 'tok').evicted, 0, 'and it is gone');
  const again = introspector.introspect(endpoint, 'tok', signal());
  t.equal(endpoint.calls.length, 2, 'the endpoint is asked again');
  endpoint.call(1).answer.resolve({ outcome: 'inactive' });
  const answer: Answer = await again;
  t.same([answer.result.outcome, answer.cache], ['inactive', 'miss']);
});

/** A cache with negative caching: inactive answers for 10 s. */
function setupNegative(clock = { now: () => NOW }) {
  const cache = new IntrospectionCache({ maxEntries: 100, ttlSeconds: 60, maxNegativeEntries: 100, negativeTtlSeconds: 10, clock });
  return { cache, introspector: new Introspector(cache), endpoint: new FakeEndpoint() };
}

t.test('negative caching: 1000 Checks of one bad token within negativeTTL make 1 endpoint call', async (t) => {
  let now = NOW;
  const { introspector, endpoint, cache } = setupNegative({ now: () => now });
  // A burst: 500 arrive together and share the one call...
  const burst = Array.from({ length: 500 }, () => introspector.introspect(endpoint, 'bad', signal()));
  t.equal(endpoint.calls.length, 1);
  endpoint.call(0).answer.resolve({ outcome: 'inactive' });
  const first = await Promise.all(burst);
  t.equal(first.filter((a) => a.cache === 'miss').length, 1, 'one miss');
  t.equal(first.filter((a) => a.cache === 'coalesced').length, 499, '499 coalesced');
  t.equal(cache.negativeSize, 1, 'the inactive answer is kept');
  // ...and 500 more trickle in over the next 9.9 s.
  const later: Answer[] = [];
  for (let i = 0; i < 500; i += 1) {
    now = NOW + Math.floor((i * 9_900) / 500);
    later.push(await introspector.introspect(endpoint, 'bad', signal()));
  }
  t.ok(later.every((a) => a.cache === 'negative_hit' && a.result.outcome === 'inactive'), 'all 500 are negative hits');
  t.equal(endpoint.calls.length, 1, 'exactly 1 introspection for 1000 Checks');
  t.equal(cache.size, 0, 'nothing in the active cache');

  now = NOW + 10_000;
  const after = introspector.introspect(endpoint, 'bad', signal());
  t.equal(endpoint.calls.length, 2, 'asked again once negativeTTL is over');
  endpoint.call(1).answer.resolve({ outcome: 'inactive' });
  t.equal((await after).cache, 'miss');
});

t.test('negative caching keeps only inactive answers: never errors, timeouts or bad responses', async (t) => {
  for (const result of [
    { outcome: 'error', detail: 'ECONNREFUSED' },
    { outcome: 'timeout', detail: 'slow' },
    { outcome: 'bad_response', detail: 'HTTP 500' },
    { outcome: 'circuit_open', detail: 'open' },
  ] as IntrospectionResult[]) {
    const { introspector, endpoint, cache } = setupNegative();
    const first = introspector.introspect(endpoint, 'tok', signal());
    endpoint.call(0).answer.resolve(result);
    await first;
    t.equal(cache.negativeSize + cache.size, 0, `${result.outcome}: nothing cached`);
    const second = introspector.introspect(endpoint, 'tok', signal());
    t.equal(endpoint.calls.length, 2, `${result.outcome}: asked again`);
    endpoint.call(1).answer.resolve({ outcome: 'inactive' });
    await second;
  }
});

t.test('an inactive answer that turns valid soon (validFrom) is cached only until then', async (t) => {
  let now = NOW;
  const { introspector, endpoint } = setupNegative({ now: () => now });
  const first = introspector.introspect(endpoint, 'early', signal());
  endpoint.call(0).answer.resolve({ outcome: 'inactive', validFrom: NOW + 2_000 });
  await first;
  now = NOW + 1_999;
  t.equal((await introspector.introspect(endpoint, 'early', signal())).cache, 'negative_hit');
  now = NOW + 2_000;
  const again = introspector.introspect(endpoint, 'early', signal());
  t.equal(endpoint.calls.length, 2, 'asked again once the token may be valid');
  endpoint.call(1).answer.resolve(active('alice'));
  t.equal((await again).result.outcome, 'active');
});

t.test('clientIdHeader: the client id from the request is part of the call and of the cached answer', async (t) => {
  const { introspector, cache } = setupNegative();
  const endpoint = Object.assign(new FakeEndpoint('ibm'), { clientIdHeader: 'x-client-id' });
  const headers = (...values: string[]) => new Map([['x-client-id', values]]);

  // Same token, two client ids, at the same time: two calls, never shared.
  const a = introspector.introspect(endpoint, 'tok', signal(), headers('client-a'));
  const a2 = introspector.introspect(endpoint, 'tok', signal(), headers('client-a'));
  const b = introspector.introspect(endpoint, 'tok', signal(), headers('client-b'));
  t.equal(endpoint.calls.length, 2, 'one call per client id');
  const clientIds = (endpoint.calls as Array<Call & { clientId?: string | null }>).map((c) => c.clientId);
  t.same(clientIds, ['client-a', 'client-b'], 'each asked with its client id');
  endpoint.call(0).answer.resolve(active('alice'));
  endpoint.call(1).answer.resolve({ outcome: 'inactive' });
  t.same(
    (await Promise.all([a, a2, b])).map((x) => [x.result.outcome, x.cache]),
    [
      ['active', 'miss'],
      ['active', 'coalesced'],
      ['inactive', 'miss'],
    ],
  );
  t.equal((await introspector.introspect(endpoint, 'tok', signal(), headers('client-a'))).cache, 'hit');
  // client-b's inactive answer sits beside it, in the negative cache, under the same token key.
  t.ok(cache.isInactive(cacheKey('ibm', 'tok'), 'client-b'));

  const c = introspector.introspect(endpoint, 'tok', signal(), headers('client-c'));
  t.equal(endpoint.calls.length, 3, 'a third client id is asked for: a cached answer for another never serves it');
  endpoint.call(2).answer.resolve({ outcome: 'inactive' });
  t.equal((await c).result.outcome, 'inactive');

  for (const [name, h] of [
    ['no header', new Map()],
    ['no headers at all', undefined],
    ['two header lines', headers('a', 'b')],
    ['a joined list', headers('a,b')],
    ['empty', headers('  ')],
    ['control characters', headers('a\u0001b')],
    ['too long', headers('x'.repeat(257))],
  ] as const) {
    const answer = await introspector.introspect(endpoint, 'tok', signal(), h);
    t.equal(answer.result.outcome, 'error', `${name}: error`);
    t.equal(answer.cache, 'none', `${name}: no lookup`);
    t.match('detail' in answer.result ? answer.result.detail : '', /x-client-id/, `${name}: the detail names the header`);
  }
  t.equal(endpoint.calls.length, 3, 'none of those reached the endpoint');
});

t.test('evict drops inactive answers too, and keeps calls under way out of the cache', async (t) => {
  const { introspector, endpoint, cache } = setupNegative();
  const bad = introspector.introspect(endpoint, 'bad', signal());
  endpoint.call(0).answer.resolve({ outcome: 'inactive' });
  await bad;
  t.equal(introspector.evict(['as'], 'bad').evicted, 1, 'the inactive answer is dropped');
  t.equal(cache.negativeSize, 0);

  // A call under way when the token is evicted (revoked meanwhile): its answer is not cached.
  const pending = introspector.introspect(endpoint, 'tok', signal());
  t.equal(introspector.evict(['as'], 'tok').evicted, 0, 'nothing cached yet');
  const afterEviction = introspector.introspect(endpoint, 'tok', signal());
  t.equal(endpoint.calls.length, 3, 'a Check after the eviction does not join the older call');
  endpoint.call(1).answer.resolve(active('alice'));
  t.equal((await pending).result.outcome, 'active', 'the older call still answers its callers');
  t.equal(cache.size, 0, 'but is not cached');
  endpoint.call(2).answer.resolve({ outcome: 'inactive' });
  t.equal((await afterEviction).result.outcome, 'inactive', 'the newer call says what the endpoint says now');
  t.equal(cache.negativeSize, 1, 'and is cached');

  const other = introspector.introspect(endpoint, 'other', signal());
  const cleared = introspector.clear().evicted;
  t.equal(cleared, 1, 'clear counts what it dropped');
  endpoint.call(3).answer.resolve(active('bob'));
  await other;
  t.equal(cache.size + cache.negativeSize, 0, 'a call under way during clear is not cached either');
});

t.test('no unhandled rejection in the whole file', async (t) => {
  await new Promise((resolve) => setImmediate(resolve));
  t.same(unhandled, []);
});
