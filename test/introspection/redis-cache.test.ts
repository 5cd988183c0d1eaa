// The Redis tier on its own, against a real redis-server: sealed values under
// HMAC keys, a miss for anything that does not open, the eviction channel,
// and failures (down, slow) that read as misses within the timeout.
import t, { type Test } from 'tap';
import { createServer, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { RedisSharedCache, type SharedLookup } from '../../src/introspection/redis-cache.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const SECRET = 'redis-cache-test-secret-0123456789abcdef';
const TOKEN = 'tokenAliceAAAAAAAAAAAAAAAAAAAAAA';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(condition: () => boolean | Promise<boolean>, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(10);
  }
}

function cache(t: Test, url: string, extra: Partial<ConstructorParameters<typeof RedisSharedCache>[0]> = {}) {
  const lookups: SharedLookup[] = [];
  const errors: string[] = [];
  const shared = new RedisSharedCache({
    url,
    keySecret: SECRET,
    keyPrefix: 'p:',
    timeout: 50,
    retention: 600_000,
    onLookup: (result) => lookups.push(result),
    onError: (operation) => errors.push(operation),
    ...extra,
  });
  t.teardown(() => shared.close());
  return { shared, lookups, errors };
}

async function server(t: Test): Promise<{ redis: RedisServer; plain: Redis }> {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const plain = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  plain.on('error', () => {});
  t.teardown(() => plain.disconnect());
  return { redis, plain };
}

const entry = (writtenAt = Date.now()) => ({
  active: true as const,
  claims: { sub: 'alice' },
  tokenExpiresAt: null,
  expiresAt: Date.now() + 60_000,
  writtenAt,
});

t.test('sealed values under HMAC keys; anything that does not open is a miss', async (t) => {
  const { plain, redis } = await server(t);
  const { shared, lookups } = cache(t, redis.url);
  t.ok(await eventually(() => shared.connected));
  const key = shared.key('one', TOKEN);
  t.equal(await shared.get(key, 'one', TOKEN), undefined);
  shared.set(key, 'one', TOKEN, entry());
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1));
  const pttl = await plain.pttl(`p:${key}`);
  t.ok(pttl > 55_000 && pttl <= 60_000, 'expires with the entry');
  t.same((await shared.get(key, 'one', TOKEN))?.active, true);
  t.equal(await shared.get(key, 'one', `${TOKEN}x`), undefined, 'wrong token');

  const value = (await plain.getBuffer(`p:${key}`))!;
  value[value.length - 1]! ^= 1;
  await plain.set(`p:${key}`, value);
  t.equal(await shared.get(key, 'one', TOKEN), undefined, 'tampered');
  t.same(lookups, ['miss', 'hit', 'refused', 'refused'], 'a value that does not open is refused, not missing');

  shared.set(key, 'one', TOKEN, { active: false, expiresAt: Date.now() - 1, writtenAt: Date.now() - 2 });
  await sleep(20);
  t.equal(await plain.exists(`p:${key}`), 1, 'an already expired entry is not written');
});

t.test('an entry that cannot be sealed is a counted set error, never a throw', async (t) => {
  const { plain, redis } = await server(t);
  const { shared, errors } = cache(t, redis.url);
  t.ok(await eventually(() => shared.connected));
  // Deeper than JSON.stringify can go: built here, since the endpoint client no longer takes such an answer.
  let deep: Record<string, unknown> = {};
  for (let i = 0; i < 100_000; i++) deep = { a: deep };
  const key = shared.key('one', TOKEN);
  t.doesNotThrow(() => shared.set(key, 'one', TOKEN, { ...entry(), claims: { sub: 'alice', deep } }));
  t.same(errors, ['set']);
  t.equal(await plain.exists(`p:${key}`), 0, 'nothing written');
  shared.set(key, 'one', TOKEN, entry());
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1), 'the next write goes through');
});

t.test('the eviction channel: keys, all, and noise', async (t) => {
  const { plain, redis } = await server(t);
  const a = cache(t, redis.url);
  const b = cache(t, redis.url);
  const seen: string[] = [];
  b.shared.listen({ evict: (keys) => seen.push(...keys), clear: () => seen.push('*') });
  t.ok(await eventually(() => a.shared.connected && b.shared.connected));
  const key = a.shared.key('one', TOKEN);
  a.shared.set(key, 'one', TOKEN, entry());
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1));
  a.shared.evict([key]);
  a.shared.evict([]);
  t.ok(await eventually(() => seen.length === 1));
  t.same(seen, [key]);
  t.equal(await plain.exists(`p:${key}`), 0, 'deleted from Redis');

  await plain.set('p:other', 'kept: not ours');
  await plain.set(`p:${'0'.repeat(64)}`, 'ours');
  a.shared.evictAll();
  t.ok(await eventually(() => seen.length === 2));
  t.equal(seen[1], '*');
  t.equal(await plain.exists(`p:${'0'.repeat(64)}`), 0, 'every entry under the prefix went');
  t.equal(await plain.exists('p:other'), 1, 'keys not shaped like entries stay');

  await plain.publish('p:evictions', 'not-a-key,also not');
  await plain.publish('p:evictions', `${'a'.repeat(64)},junk`);
  t.ok(await eventually(() => seen.length === 3));
  t.same(seen[2], 'a'.repeat(64), 'only well-formed keys pass');
});

t.test('Redis down: misses at once, the circuit opens, lookups are skipped; back: used again', async (t) => {
  const { redis } = await server(t);
  const { shared, lookups, errors } = cache(t, redis.url, { breakerFailures: 2, breakerResetTimeout: 100 });
  const cleared: number[] = [];
  shared.listen({ evict: () => {}, clear: () => cleared.push(1) });
  t.ok(await eventually(() => shared.connected));
  await redis.kill();
  const key = shared.key('one', TOKEN);
  for (let i = 0; i < 4; i++) {
    const began = performance.now();
    t.equal(await shared.get(key, 'one', TOKEN), undefined);
    // The timeout is 50 ms; the bound is loose because the machine may be loaded.
    t.ok(performance.now() - began < 1000, 'within the timeout, not a reconnect wait');
  }
  t.same(lookups, ['error', 'error', 'skipped', 'skipped']);
  t.equal(shared.circuitState, 'open');
  shared.set(key, 'one', TOKEN, entry());
  shared.evict([key]);
  shared.evictAll();
  t.ok(await eventually(() => errors.includes('evict')));

  await redis.restart();
  t.ok(await eventually(() => shared.connected, 3000), 'reconnected');
  // Once for the lost subscription, and again when the deferred eviction of all comes back on the channel.
  t.ok(await eventually(() => cleared.length >= 1), 'a reconnected subscription clears the in-process tier');
  await sleep(120);
  t.equal(await shared.get(key, 'one', TOKEN), undefined);
  t.equal(lookups.at(-1), 'miss', 'the probe went through');
  t.equal(shared.circuitState, 'closed');
});

t.test('a failure listener that throws leaves no rejection unhandled (writes, evictions, publishes)', async (t) => {
  const { redis } = await server(t);
  let calls = 0;
  const { shared } = cache(t, redis.url, {
    onError: () => {
      calls += 1;
      throw new Error('listener broke');
    },
  });
  t.ok(await eventually(() => shared.connected));
  await redis.kill();
  const key = shared.key('one', TOKEN);
  shared.set(key, 'one', TOKEN, entry());
  shared.evict([key]);
  shared.evictAll();
  // tap fails this file on any unhandled rejection; each failed command reached the listener.
  t.ok(await eventually(() => calls >= 3), `the listener was told (${calls} times)`);
  await sleep(50);
});

t.test('a Redis that does not answer costs at most the timeout', async (t) => {
  // Answers the connection handshake, then never answers a GET.
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (data) => {
      // One reply per command in the chunk (a chunk may hold several).
      for (const command of data.toString().split(/(?=\*\d+\r\n\$)/)) {
        if (/^\*2\r\n\$3\r\nget\r\n/i.test(command)) continue;
        if (/subscribe/i.test(command)) socket.write('*3\r\n$9\r\nsubscribe\r\n$11\r\np:evictions\r\n:1\r\n');
        else socket.write('$0\r\n\r\n');
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const { port } = silent.address() as { port: number };
  const { shared, lookups, errors } = cache(t, `redis://127.0.0.1:${port}`, { timeout: 30 });
  t.ok(await eventually(() => shared.connected));
  const began = performance.now();
  t.equal(await shared.get(shared.key('one', TOKEN), 'one', TOKEN), undefined);
  const took = performance.now() - began;
  t.ok(took >= 25 && took < 200, `gave up after ${Math.round(took)} ms`);
  t.same(lookups, ['error']);
  t.same(errors, ['get']);
});

t.test('entries written before an eviction, here or heard of, are refused; later ones are used', async (t) => {
  const { plain, redis } = await server(t);
  let now = Date.now();
  const clock = { now: () => now };
  const a = cache(t, redis.url, { clock });
  const b = cache(t, redis.url, { clock });
  const heard: string[] = [];
  b.shared.listen({ evict: (keys) => heard.push(...keys), clear: () => heard.push('*') });
  t.ok(await eventually(() => a.shared.connected && b.shared.connected));
  const key = a.shared.key('one', TOKEN);
  const name = `p:${key}`;
  const before = now - 1;
  a.shared.set(key, 'one', TOKEN, entry(before));
  t.ok(await eventually(async () => (await plain.exists(name)) === 1));
  const captured = (await plain.getBuffer(name))!;

  a.shared.evict([key]);
  t.ok(await eventually(() => heard.length === 1), 'b heard of it');
  await plain.set(name, captured, 'PX', 60_000);
  t.equal(await a.shared.get(key, 'one', TOKEN), undefined, 'replayed: refused where evicted');
  t.equal(await b.shared.get(key, 'one', TOKEN), undefined, 'replayed: refused where heard of');
  t.same([a.lookups.at(-1), b.lookups.at(-1)], ['refused', 'refused'], 'counted as refused');

  // Written within the clock skew allowed after the eviction: still refused (its writer's clock may be ahead).
  a.shared.set(key, 'one', TOKEN, entry(now + 1000));
  t.ok(await eventually(async () => !(await plain.getBuffer(name))!.equals(captured)));
  t.equal(await b.shared.get(key, 'one', TOKEN), undefined, 'within the skew: refused');
  now += 3000;
  a.shared.set(key, 'one', TOKEN, entry(now));
  t.ok(await eventually(async () => (await b.shared.get(key, 'one', TOKEN)) !== undefined), 'written after: used');

  // An eviction of all refuses every older entry, of any key.
  const other = a.shared.key('two', TOKEN);
  a.shared.set(other, 'two', TOKEN, entry(now - 1));
  t.ok(await eventually(async () => (await plain.exists(`p:${other}`)) === 1));
  const otherValue = (await plain.getBuffer(`p:${other}`))!;
  b.shared.evictAll();
  t.ok(await eventually(() => heard.includes('*')));
  await plain.set(`p:${other}`, otherValue, 'PX', 60_000);
  t.equal(await a.shared.get(other, 'two', TOKEN), undefined, 'refused where heard of');
  t.equal(await b.shared.get(other, 'two', TOKEN), undefined, 'refused where evicted');
});

t.test('an entry lives no longer after it was written than evictions are remembered', async (t) => {
  const { plain, redis } = await server(t);
  const { shared } = cache(t, redis.url, { retention: 10_000 });
  t.ok(await eventually(() => shared.connected));
  const key = shared.key('one', TOKEN);
  const writtenAt = Date.now();
  shared.set(key, 'one', TOKEN, { ...entry(writtenAt), expiresAt: writtenAt + 60_000 });
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1));
  t.ok((await plain.pttl(`p:${key}`)) <= 10_000, 'written with the shorter lifetime');
  t.equal((await shared.get(key, 'one', TOKEN))?.expiresAt, writtenAt + 10_000);
});

t.test('a subscription lost and back refuses every entry written before', async (t) => {
  const { plain, redis } = await server(t);
  const { shared } = cache(t, redis.url);
  t.ok(await eventually(() => shared.connected));
  const key = shared.key('one', TOKEN);
  shared.set(key, 'one', TOKEN, entry(Date.now() - 5000));
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1));
  const value = (await plain.getBuffer(`p:${key}`))!;
  t.ok(await shared.get(key, 'one', TOKEN), 'used while nothing was missed');
  await redis.kill();
  await redis.restart();
  t.ok(await eventually(() => shared.connected, 3000), 'reconnected');
  await plain.set(`p:${key}`, value, 'PX', 60_000);
  t.equal(await shared.get(key, 'one', TOKEN), undefined, 'evictions may have been missed meanwhile');
});

t.test('an eviction Redis does not take resolves false, stays a tombstone here, and is sent again once Redis is back', async (t) => {
  const { plain, redis } = await server(t);
  // a reaches Redis through a relay the test can cut (a partition); b stays connected throughout.
  const relay = await startTcpProxy(redis.port);
  t.teardown(() => relay.close());
  const a = cache(t, `redis://127.0.0.1:${relay.port}`);
  const b = cache(t, redis.url);
  const seen: string[] = [];
  b.shared.listen({ evict: (keys) => seen.push(...keys), clear: () => seen.push('*') });
  t.ok(await eventually(() => a.shared.connected && b.shared.connected));
  const key = a.shared.key('one', TOKEN);
  const written = Date.now() - 5000;
  b.shared.set(key, 'one', TOKEN, entry(written));
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1));

  relay.cut();
  t.equal(await a.shared.evict([key]), false, 'not taken: Redis is out of reach');
  t.same(a.shared.pendingEvictions, { keys: 1, all: false }, 'kept to be sent again');
  t.same(seen, [], 'the other replica has not heard of it');
  t.equal(await plain.exists(`p:${key}`), 1, 'the entry is still in Redis');

  relay.restore();
  t.ok(await eventually(() => seen.length === 1, 5000), 'sent again once Redis answers: the other replica hears it');
  t.same(seen, [key]);
  t.equal(await plain.exists(`p:${key}`), 0, 'and the entry is deleted');
  t.same(a.shared.pendingEvictions, { keys: 0, all: false });

  // Written back by someone who captured it: the tombstone here refuses it.
  b.shared.set(key, 'one', TOKEN, entry(written));
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1));
  t.equal(await a.shared.get(key, 'one', TOKEN), undefined, 'refused: written before the eviction');
});

t.test('an eviction of all Redis does not take is sent again as one', async (t) => {
  const { redis } = await server(t);
  const relay = await startTcpProxy(redis.port);
  t.teardown(() => relay.close());
  const a = cache(t, `redis://127.0.0.1:${relay.port}`);
  const b = cache(t, redis.url);
  const seen: string[] = [];
  b.shared.listen({ evict: (keys) => seen.push(...keys), clear: () => seen.push('*') });
  t.ok(await eventually(() => a.shared.connected && b.shared.connected));
  relay.cut();
  t.equal(await a.shared.evict([a.shared.key('one', TOKEN)]), false);
  t.equal(await a.shared.evictAll(), false);
  t.same(a.shared.pendingEvictions, { keys: 0, all: true }, 'the eviction of all covers the key');
  relay.restore();
  t.ok(await eventually(() => seen.length >= 1, 5000));
  await sleep(100);
  t.same(seen, ['*'], 'one eviction of all, nothing more');
});

t.test('without announce an eviction is only remembered here: no delete, no message', async (t) => {
  const { plain, redis } = await server(t);
  const a = cache(t, redis.url);
  const b = cache(t, redis.url);
  const seen: string[] = [];
  b.shared.listen({ evict: (keys) => seen.push(...keys), clear: () => seen.push('*') });
  t.ok(await eventually(() => a.shared.connected && b.shared.connected));
  const key = a.shared.key('one', TOKEN);
  b.shared.set(key, 'one', TOKEN, entry(Date.now() - 5000));
  t.ok(await eventually(async () => (await plain.exists(`p:${key}`)) === 1));
  t.equal(await a.shared.evict([key], false), true);
  await sleep(100);
  t.same(seen, [], 'nobody was told');
  t.equal(await plain.exists(`p:${key}`), 1, 'Redis untouched');
  t.equal(await a.shared.get(key, 'one', TOKEN), undefined, 'but refused here');
  t.same((await b.shared.get(key, 'one', TOKEN))?.active, true, 'and still used where nothing was evicted');
});
