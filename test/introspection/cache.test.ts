import t from 'tap';
import { cacheKey, IntrospectionCache } from '../../src/introspection/cache.js';
import type { Claims } from '../../src/introspection/result.js';

class FakeClock {
  ms: number;
  constructor(ms = 1_700_000_000_000) {
    this.ms = ms;
  }
  now(): number {
    return this.ms;
  }
}

const claims = (sub: string): Claims => Object.freeze({ active: true, sub });

t.test('cacheKey', async (t) => {
  const token = 'eyJhbGciOiJSUzI1NiJ9.payload.signature';
  const key = cacheKey('as', token);
  t.type(key, 'string');
  t.equal(key, cacheKey('as', token), 'stable');
  t.not(key, cacheKey('other-as', token), 'differs per endpoint');
  t.not(key, cacheKey('as', `${token}x`), 'differs per token');
  t.not(key, token, 'is not the token');
  t.notOk(key.includes(token), 'does not contain the token');
  t.notOk(key.includes('payload'), 'does not contain a part of the token');
  t.not(cacheKey('a', 'bc'), cacheKey('ab', 'c'), 'endpoint and token do not run together');
  const keys = new Set(Array.from({ length: 1000 }, (_, i) => cacheKey('as', `token-${i}`)));
  t.equal(keys.size, 1000, 'no collisions over 1000 tokens');
});

t.test('an answer lives min(ttl, exp)', async (t) => {
  const cases: Array<[string, number, number | null, number]> = [
    // name, ttl seconds, token exp as offset from now (ms) or null, expected lifetime ms
    ['no exp: ttl', 600, null, 600_000],
    ['exp after ttl: ttl', 60, 3_600_000, 60_000],
    ['exp before ttl: exp', 600, 30_000, 30_000],
    ['exp equal to ttl', 60, 60_000, 60_000],
    ['exp 1 ms ahead', 600, 1, 1],
  ];
  for (const [name, ttl, expOffset, lifetime] of cases) {
    const clock = new FakeClock();
    const start = clock.ms;
    const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: ttl, clock });
    cache.set('k', claims('alice'), expOffset === null ? null : start + expOffset);
    const entry = cache.get('k');
    t.equal(entry?.expiresAt, start + lifetime, `${name}: expiresAt`);
    t.equal(entry?.claims['sub'], 'alice', `${name}: claims`);
    clock.ms = start + lifetime - 1;
    t.ok(cache.get('k'), `${name}: still there 1 ms before`);
    clock.ms = start + lifetime;
    t.equal(cache.get('k'), undefined, `${name}: gone at expiry`);
    t.equal(cache.size, 0, `${name}: and dropped`);
  }
});

t.test('expiry follows the injected clock, not the wall clock', async (t) => {
  const clock = new FakeClock();
  const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 60, clock });
  cache.set('k', claims('alice'), clock.ms + 5);
  const wallClock = Date.now;
  // An hour of real time passes while the injected clock stands still.
  Date.now = () => wallClock() + 3_600_000;
  try {
    t.equal(cache.get('k')?.claims['sub'], 'alice', 'still there by the injected clock');
    t.equal(cache.size, 1);
  } finally {
    Date.now = wallClock;
  }
  clock.ms += 5;
  t.equal(cache.get('k'), undefined, 'gone once the injected clock reaches the expiry');
});

t.test('an answer whose token has expired is not stored', async (t) => {
  for (const offset of [0, -1, -60_000]) {
    const clock = new FakeClock();
    const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, clock });
    cache.set('k', claims('alice'), clock.ms + offset);
    t.equal(cache.get('k'), undefined, `exp ${offset} ms from now`);
    t.equal(cache.size, 0);
  }
});

t.test('maxEntries 0 or ttl 0 disables the cache', async (t) => {
  const cases: Array<[number, number, boolean]> = [
    [0, 600, false],
    [1000, 0, false],
    [0, 0, false],
    [1, 1, true],
  ];
  for (const [maxEntries, ttlSeconds, enabled] of cases) {
    const cache = new IntrospectionCache({ maxEntries, ttlSeconds, clock: new FakeClock() });
    const name = `maxEntries ${maxEntries}, ttl ${ttlSeconds}`;
    t.equal(cache.enabled, enabled, `${name}: enabled`);
    cache.set('k', claims('alice'), null);
    t.equal(cache.get('k') !== undefined, enabled, `${name}: get`);
    t.equal(cache.size, enabled ? 1 : 0, `${name}: size`);
    t.equal(cache.delete('k'), enabled, `${name}: delete`);
    cache.clear();
  }
});

/**
 * How many of `keys` a cache filled with all of them still answers. Each key is
 * probed on a fresh, identically filled cache, since a read reorders the LRU.
 */
function heldAfterFilling(maxEntries: number, keys: string[]): { held: number; size: number } {
  const fill = () => {
    const cache = new IntrospectionCache({ maxEntries, ttlSeconds: 600, clock: new FakeClock() });
    for (const key of keys) cache.set(key, claims(key), null);
    return cache;
  };
  let held = 0;
  for (const key of keys) if (fill().get(key)) held += 1;
  return { held, size: fill().size };
}

t.test('never holds more than maxEntries', async (t) => {
  for (const maxEntries of [1, 2, 3, 4, 5, 10, 17]) {
    // 3x maxEntries, and counts that stop between two of the LRU's internal generations.
    for (const count of [3 * maxEntries, 3 * maxEntries + Math.floor(maxEntries / 2), 4 * maxEntries - 1]) {
      const keys = Array.from({ length: count }, (_, i) => `key-${i}`);
      const { held, size } = heldAfterFilling(maxEntries, keys);
      const name = `maxEntries ${maxEntries}, ${count} keys`;
      t.ok(held <= maxEntries, `${name}: ${held} entries answerable`);
      t.ok(held >= 1, `${name}: the cache still works`);
      t.ok(size <= maxEntries, `${name}: size ${size}`);
      t.ok(size <= held, `${name}: size never counts what is gone`);
    }
  }
});

t.test('holds exactly maxEntries: the setting is the capacity, not an upper bound on it', async (t) => {
  for (const maxEntries of [1, 2, 3, 4, 5, 10, 17, 1000]) {
    for (const count of [maxEntries, maxEntries + 1, 3 * maxEntries + Math.floor(maxEntries / 2)]) {
      const evicted: number[] = [];
      const cache = new IntrospectionCache({ maxEntries, ttlSeconds: 600, clock: new FakeClock(), onEviction: () => evicted.push(1) });
      for (let i = 0; i < count; i += 1) cache.set(`key-${i}`, claims(`u${i}`), null);
      const name = `maxEntries ${maxEntries}, ${count} keys`;
      t.equal(cache.size, maxEntries, `${name}: size`);
      t.equal(evicted.length, count - maxEntries, `${name}: one eviction per answer beyond the bound`);
      let held = 0;
      for (let i = 0; i < count; i += 1) if (cache.get(`key-${i}`) !== undefined) held += 1;
      t.equal(held, maxEntries, `${name}: every entry held answers`);
    }
  }
});

t.test('a read makes an answer the most recently used: the least recently used goes first', async (t) => {
  const cache = new IntrospectionCache({ maxEntries: 3, ttlSeconds: 600, clock: new FakeClock() });
  for (const key of ['a', 'b', 'c']) cache.set(key, claims(key), null);
  t.ok(cache.get('a'), 'a read');
  cache.set('d', claims('d'), null);
  t.equal(cache.get('b'), undefined, 'b, least recently used, went');
  for (const key of ['a', 'c', 'd']) t.ok(cache.get(key), `${key} stays`);
});

t.test('the negative LRU holds exactly maxNegativeEntries', async (t) => {
  const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, maxNegativeEntries: 7, negativeTtlSeconds: 10, clock: new FakeClock() });
  for (let i = 0; i < 20; i += 1) cache.setInactive(`bad-${i}`);
  t.equal(cache.negativeSize, 7);
  let held = 0;
  for (let i = 0; i < 20; i += 1) if (cache.isInactive(`bad-${i}`)) held += 1;
  t.equal(held, 7);
});

t.test('the most recent answer survives a flood', async (t) => {
  const cache = new IntrospectionCache({ maxEntries: 4, ttlSeconds: 600, clock: new FakeClock() });
  for (let i = 0; i < 100; i += 1) cache.set(`key-${i}`, claims(`u${i}`), null);
  t.equal(cache.get('key-99')?.claims['sub'], 'u99');
  t.equal(cache.get('key-0'), undefined, 'the oldest is gone');
});

t.test('set replaces an entry', async (t) => {
  const clock = new FakeClock();
  const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, clock });
  cache.set('k', claims('alice'), null);
  clock.ms += 1000;
  cache.set('k', claims('bob'), null);
  t.equal(cache.get('k')?.claims['sub'], 'bob');
  t.equal(cache.get('k')?.expiresAt, clock.ms + 600_000);
  t.equal(cache.size, 1);
});

t.test('delete and clear', async (t) => {
  const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, clock: new FakeClock() });
  cache.set('a', claims('a'), null);
  cache.set('b', claims('b'), null);
  cache.set('c', claims('c'), null);
  t.equal(cache.size, 3);
  t.equal(cache.delete('a'), true, 'delete reports a removal');
  t.equal(cache.delete('a'), false, 'and nothing the second time');
  t.equal(cache.delete('nope'), false);
  t.equal(cache.get('a'), undefined);
  t.equal(cache.get('b')?.claims['sub'], 'b', 'others kept');
  t.equal(cache.size, 2);
  cache.clear();
  t.equal(cache.size, 0);
  t.equal(cache.get('b'), undefined);
  t.equal(cache.get('c'), undefined);
  cache.set('d', claims('d'), null);
  t.equal(cache.get('d')?.claims['sub'], 'd', 'usable after clear');
});

t.test('the cache keeps the claims object it was given', async (t) => {
  const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, clock: new FakeClock() });
  const answer = claims('alice');
  cache.set('k', answer, null);
  t.equal(cache.get('k')?.claims, answer);
});

/** A cache with both LRUs: active answers for 600 s, inactive ones for 10 s. */
function withNegative(clock = new FakeClock(), maxEntries = 10, maxNegativeEntries = 10) {
  return new IntrospectionCache({ maxEntries, ttlSeconds: 600, maxNegativeEntries, negativeTtlSeconds: 10, clock });
}

t.test('inactive answers: kept for negativeTTL', async (t) => {
  const clock = new FakeClock();
  const cache = withNegative(clock);
  t.equal(cache.negativeEnabled, true);
  t.equal(cache.isInactive('k'), false);
  cache.setInactive('k', 'as');
  t.equal(cache.isInactive('k'), true);
  t.equal(cache.get('k'), undefined, 'an inactive answer is no active entry');
  t.equal(cache.size, 0, 'and not counted with them');
  t.equal(cache.negativeSize, 1);
  clock.ms += 9_999;
  t.equal(cache.isInactive('k'), true, '1 ms before negativeTTL');
  clock.ms += 1;
  t.equal(cache.isInactive('k'), false, 'gone at negativeTTL');
  t.equal(cache.negativeSize, 0, 'and dropped');
});

t.test('an inactive answer lives no longer than validFrom', async (t) => {
  const clock = new FakeClock();
  const cache = withNegative(clock);
  cache.setInactive('soon', 'as', null, clock.ms + 3_000);
  clock.ms += 2_999;
  t.equal(cache.isInactive('soon'), true);
  clock.ms += 1;
  t.equal(cache.isInactive('soon'), false, 'the token may be active from validFrom on');
  cache.setInactive('now', 'as', null, clock.ms);
  t.equal(cache.negativeSize, 0, 'a validFrom already reached is not stored');
});

t.test('negativeTTL 0 or maxNegativeEntries 0 disables negative caching only', async (t) => {
  for (const [maxNegativeEntries, negativeTtlSeconds] of [
    [0, 10],
    [10, 0],
  ] as const) {
    const cache = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, maxNegativeEntries, negativeTtlSeconds, clock: new FakeClock() });
    t.equal(cache.negativeEnabled, false);
    cache.setInactive('k', 'as');
    t.equal(cache.isInactive('k'), false);
    cache.set('a', claims('a'), null);
    t.ok(cache.get('a'), 'active answers still cached');
  }
  const defaults = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 600, clock: new FakeClock() });
  t.equal(defaults.negativeEnabled, false, 'off unless asked for');
  const onlyNegative = new IntrospectionCache({ maxEntries: 10, ttlSeconds: 0, maxNegativeEntries: 10, negativeTtlSeconds: 10, clock: new FakeClock() });
  t.equal(onlyNegative.enabled, false);
  t.equal(onlyNegative.negativeEnabled, true, 'the two are independent');
});

t.test('a flood of inactive answers never pushes out an active one', async (t) => {
  const cache = withNegative(new FakeClock(), 4, 4);
  cache.set('valid', claims('alice'), null);
  for (let i = 0; i < 10_000; i += 1) cache.setInactive(`bad-${i}`, 'as');
  t.equal(cache.get('valid')?.claims['sub'], 'alice', 'the active answer is still there');
  t.equal(cache.size, 1);
  t.ok(cache.negativeSize <= 4, `the negative LRU holds at most its bound (${cache.negativeSize})`);
  t.equal(cache.isInactive('bad-9999'), true, 'the latest bad token is held');
  t.equal(cache.isInactive('bad-0'), false, 'the oldest is gone');
});

t.test('client ids: an entry serves only the client id it was obtained with', async (t) => {
  const cache = withNegative();
  cache.set('k', claims('alice'), null, 'as', 'client-a');
  t.equal(cache.get('k', 'client-a')?.claims['sub'], 'alice');
  t.equal(cache.get('k', 'client-b'), undefined, 'another client id');
  t.equal(cache.get('k'), undefined, 'no client id');
  cache.setInactive('n', 'as', 'client-a');
  t.equal(cache.isInactive('n', 'client-a'), true);
  t.equal(cache.isInactive('n', 'client-b'), false);
  t.equal(cache.isInactive('n'), false);
});

t.test('an active answer replaces an inactive one; delete and clear drop both', async (t) => {
  const cache = withNegative();
  cache.setInactive('k', 'as');
  cache.set('k', claims('alice'), null, 'as');
  t.equal(cache.isInactive('k'), false, 'the token became active (its nbf came)');
  t.ok(cache.get('k'));

  cache.setInactive('only-negative', 'as');
  t.equal(cache.delete('only-negative'), true, 'delete reports an inactive entry too');
  t.equal(cache.isInactive('only-negative'), false);
  t.equal(cache.delete('k'), true);
  t.equal(cache.delete('k'), false);

  cache.set('a', claims('a'), null, 'as');
  cache.setInactive('b', 'as');
  cache.setInactive('c', 'as');
  t.equal(cache.clear(), 3, 'clear counts both kinds');
  t.equal(cache.size + cache.negativeSize, 0);
});

t.test('retainEndpoints drops both kinds of answers of endpoints not kept', async (t) => {
  const cache = withNegative();
  cache.set('a1', claims('a'), null, 'A');
  cache.setInactive('a2', 'A');
  cache.set('b1', claims('b'), null, 'B');
  cache.setInactive('b2', 'B');
  t.equal(cache.retainEndpoints(new Set(['B'])), 2);
  t.equal(cache.get('a1'), undefined);
  t.equal(cache.isInactive('a2'), false);
  t.ok(cache.get('b1'));
  t.equal(cache.isInactive('b2'), true);
  const disabled = new IntrospectionCache({ maxEntries: 0, ttlSeconds: 0 });
  t.equal(disabled.retainEndpoints(new Set()), 0);
  t.equal(disabled.clear(), 0);
});
