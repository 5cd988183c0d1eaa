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
