// Two service instances sharing a real redis-server (the Debian package,
// started here on a free loopback port): one introspection between them, an
// admin eviction on one denies on both at once, Redis dying never fails a
// Check, nothing in Redis is readable, and someone who can write Redis can
// neither forge an answer nor undo an eviction by writing an old one back.
import t, { type Test } from 'tap';
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { EndpointClient } from '../../src/introspection/endpoint-client.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const ADMIN = 'admin-token-Zx81-please-rotate';
const KEY_SECRET = 'shared-cache-key-secret-0123456789-abcdef';
const SUBJECT = 'subject-Qw7-alice';
const SCOPE_VALUE = 'scope-Zp4-payroll';
const CLIENT = 'client-Ty2-frontend';

interface Instance {
  app: App;
  envoy: EnvoyClient;
  ops: string;
}

interface Harness {
  redis: RedisServer;
  fake: FakeAuthorizationServer;
  active: Set<string>;
  a: Instance;
  b: Instance;
  /** A plain client to look at what Redis holds. */
  inspect: Redis;
  /** Tokens whose introspection answer is held back until the promise settles (decided on arrival). */
  gates: Map<string, Promise<void>>;
  introspections(): number;
}

/** Settings every instance of a harness is started with, beyond the defaults. */
type Overrides = Record<string, unknown>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll until `condition` holds, at most `ms`; whether it did. */
async function eventually(condition: () => Promise<boolean> | boolean, ms = 2000, step = 10): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(step);
  }
}

/** The configuration of an instance, less the shared tier: all an attacker is assumed to know. */
const publicSettings = (fake: FakeAuthorizationServer, overrides: Overrides = {}) => ({
  server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
  admin: { token: ADMIN },
  endpoints: [{ name: 'one', url: fake.url, authMethod: 'none' }],
  ...overrides,
});

async function startInstance(t: Test, fake: FakeAuthorizationServer, redisUrl: string | null, overrides: Overrides = {}): Promise<Instance> {
  const config = buildConfig(
    {
      ...publicSettings(fake, overrides),
      ...(redisUrl ? { redis: { url: redisUrl, keySecret: KEY_SECRET, keyPrefix: 'test:' } } : {}),
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  if (redisUrl && !(await eventually(() => app.authorizer.shared?.connected === true))) throw new Error('no connection to Redis');
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy, ops: `http://127.0.0.1:${app.admin!.port}` };
}

async function start(t: Test, withRedis = true, overrides: Overrides = {}): Promise<Harness> {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const active = new Set<string>();
  const gates = new Map<string, Promise<void>>();
  const fake = await startFakeAuthorizationServer(async (req) => {
    const token = req.body.get('token') ?? '';
    const json = active.has(token)
      ? { active: true, sub: SUBJECT, scope: SCOPE_VALUE, client_id: CLIENT, exp: Math.floor(Date.now() / 1000) + 3600 }
      : { active: false };
    await gates.get(token);
    return { json };
  });
  t.teardown(() => fake.close());
  const a = await startInstance(t, fake, withRedis ? redis.url : null, overrides);
  const b = await startInstance(t, fake, withRedis ? redis.url : null, overrides);
  const inspect = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  inspect.on('error', () => {});
  t.teardown(() => inspect.disconnect());
  return { redis, fake, active, a, b, inspect, gates, introspections: () => fake.requests.length };
}

const check = (instance: Instance, token: string) =>
  instance.envoy.check({ headers: { authorization: `Bearer ${token}` } }).then(summarize);

async function evict(instance: Instance, token: string | null): Promise<number> {
  const response = await request(`${instance.ops}/cache${token === null ? '?all=true' : ''}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${ADMIN}`, ...(token === null ? {} : { 'content-type': 'application/json' }) },
    body: token === null ? undefined : JSON.stringify({ token }),
  });
  await response.body.text();
  return response.statusCode;
}

const token = (name: string) => `tok-${name}-${'A'.repeat(24)}`;

async function keyCount(h: Harness): Promise<number> {
  return (await h.inspect.keys('test:*')).length;
}

async function metric(instance: Instance, name: string): Promise<string> {
  return (await instance.app.metrics.registry.getSingleMetricAsString(name)) ?? '';
}

t.test('two instances introspect a token once between them', async (t) => {
  const h = await start(t);
  const alice = token('alice');
  h.active.add(alice);
  t.ok((await check(h.a, alice)).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 1), 'the answer reached Redis');
  t.ok((await check(h.b, alice)).allowed);
  t.equal(h.introspections(), 1, 'the second instance read it from Redis');
  t.match(await metric(h.b, 'authz_shared_cache_lookups_total'), /result="hit"} 1/);
  t.match(await metric(h.a, 'authz_shared_cache_lookups_total'), /result="miss"} 1/);

  // Inactive answers are shared too (negativeTTL).
  t.notOk((await check(h.a, token('nobody'))).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 2));
  t.notOk((await check(h.b, token('nobody'))).allowed);
  t.equal(h.introspections(), 2);
});

// How fast is measured and printed; the bound is loose, the machine may be loaded (a speed goal is for make bench).
t.test('an eviction on one instance denies on both, promptly', async (t) => {
  const h = await start(t);
  const alice = token('alice');
  const bob = token('bob');
  h.active.add(alice).add(bob);
  for (const instance of [h.a, h.b, h.a, h.b]) {
    t.ok((await check(instance, alice)).allowed);
    t.ok((await check(instance, bob)).allowed);
  }
  t.equal(h.introspections(), 2, 'both instances hold both answers');

  h.active.delete(alice);
  const started = Date.now();
  t.equal(await evict(h.a, alice), 200);
  t.ok(await eventually(async () => !(await check(h.b, alice)).allowed, 3000, 5), 'denied on the other instance');
  t.notOk((await check(h.a, alice)).allowed, 'denied on the evicting one');
  t.comment(`eviction seen by the other instance after ${Date.now() - started} ms`);
  t.ok((await check(h.b, bob)).allowed, 'other tokens stay');

  h.active.delete(bob);
  t.equal(await evict(h.b, null), 200);
  t.ok(await eventually(async () => !(await check(h.a, bob)).allowed, 3000, 5), 'evict all reaches the other instance');
});

t.test('Redis killed mid-run: Checks go on through introspection; back: used again', async (t) => {
  const h = await start(t);
  const early = token('early');
  h.active.add(early);
  t.ok((await check(h.a, early)).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 1));
  t.ok((await check(h.b, early)).allowed);
  t.equal(h.introspections(), 1);

  await h.redis.kill();
  for (let i = 0; i < 10; i++) {
    const name = token(`down${i}`);
    h.active.add(name);
    const began = performance.now();
    t.ok((await check(i % 2 ? h.a : h.b, name)).allowed, `check ${i} while Redis is down`);
    t.ok(performance.now() - began < 2000, 'not held up by Redis (its lookups time out)');
  }
  t.equal(h.introspections(), 11, 'each answered by the endpoint');
  t.ok((await check(h.b, early)).allowed, 'the in-process tier still serves');
  t.equal(h.introspections(), 11);
  t.match(await metric(h.a, 'authz_shared_cache_lookups_total'), /result="(error|skipped)"} [1-9]/);

  await h.redis.restart();
  // Both instances reconnect (at most a second apart) and clear their in-process tier, which may have missed evictions.
  const before = h.introspections();
  t.ok(
    await eventually(async () => {
      const probe = token(`probe${Date.now()}`);
      h.active.add(probe);
      await check(h.a, probe);
      if (!(await eventually(async () => (await keyCount(h).catch(() => 0)) > 0, 100))) return false;
      const calls = h.introspections();
      await check(h.b, probe);
      return h.introspections() === calls;
    }, 5000, 100),
    'the shared tier is used again',
  );
  t.ok(h.introspections() > before);
  const again = h.introspections();
  t.ok((await check(h.b, early)).allowed);
  t.equal(h.introspections(), again + 1, 'the reconnected instance dropped its in-process answers');
});

t.test('nothing in Redis is readable: no token, subject or claim value', async (t) => {
  const h = await start(t);
  const tokens = [token('alice'), token('bob'), token('carol')];
  for (const value of tokens) h.active.add(value);
  for (const value of [...tokens, token('inactive')]) {
    await check(h.a, value);
    await check(h.b, value);
  }
  t.ok(await eventually(async () => (await keyCount(h)) === 4));
  const needles = [...tokens, token('inactive'), SUBJECT, SCOPE_VALUE, CLIENT, 'alice', 'bob', 'carol', 'sub', 'scope', 'active'];
  const keys = await h.inspect.keys('*');
  t.equal(keys.length, 4);
  for (const key of keys) {
    t.match(key, /^test:[0-9a-f]{64}$/);
    const value = (await h.inspect.getBuffer(key))!;
    const pttl = await h.inspect.pttl(key);
    t.ok(pttl > 0, 'every key expires');
    for (const needle of needles) {
      t.notOk(key.includes(needle), `key has no ${needle}`);
      t.notOk(value.includes(Buffer.from(needle)), `value has no ${needle}`);
      t.notOk(value.includes(Buffer.from(needle).toString('base64')), `value has no base64 ${needle}`);
    }
  }
});

t.test('measured: introspections with two instances, with and without the shared tier', async (t) => {
  const count = async (withRedis: boolean) => {
    const h = await start(t, withRedis);
    for (let i = 0; i < 20; i++) {
      const name = token(`m${i}`);
      h.active.add(name);
      await check(h.a, name);
      if (withRedis) await eventually(async () => (await keyCount(h)) === i + 1, 3000, 2);
      await check(h.b, name);
    }
    return h.introspections();
  };
  const without = await count(false);
  const withShared = await count(true);
  t.comment(`20 tokens, each checked on both of 2 instances: ${without} introspections without Redis, ${withShared} with`);
  t.equal(without, 40);
  t.equal(withShared, 20);
});

/**
 * What someone who can write Redis can make of public knowledge (the token, the configuration without
 * redis.keySecret, this software): every value the former scheme and its obvious successor would open,
 * a key derived from the token and the cache id, that id computed as the software does without a key
 * secret of its own.
 */
async function forgeries(fake: FakeAuthorizationServer, value: string, name: string): Promise<Buffer[]> {
  const client = new EndpointClient(buildConfig(publicSettings(fake), 'test', { env: {} }).endpoints[0]!);
  const cacheId = client.cacheId;
  await client.close();
  const now = Date.now();
  const claims = { sub: 'mallory', scope: 'admin', client_id: CLIENT };
  const entry = JSON.stringify({ active: true, claims, tokenExpiresAt: null, expiresAt: now + 60_000, writtenAt: now + 30_000 });
  return [1, 2].map((version) => {
    const key = Buffer.from(hkdfSync('sha256', value, cacheId, `envoy-introspection-authz l2 entry v${version}`, 32));
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
    cipher.setAAD(Buffer.from(name));
    const body = Buffer.concat([cipher.update(entry, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([version]), nonce, body, cipher.getAuthTag()]);
  });
}

t.test('a Redis writer cannot forge an active answer from a token and the public settings', async (t) => {
  const h = await start(t);
  const mallory = token('mallory');
  // The service itself writes the entry's name when the attacker presents the token once.
  t.notOk((await check(h.a, mallory)).allowed, 'the authorization server says inactive');
  t.ok(await eventually(async () => (await keyCount(h)) === 1));
  const [name] = await h.inspect.keys('test:*');
  let checks = 0;
  for (const [index, forged] of (await forgeries(h.fake, mallory, name!)).entries()) {
    // A replica that never saw the token, so nothing in its memory answers for Redis.
    for (const replica of index === 0 ? [h.b, await startInstance(t, h.fake, h.redis.url)] : [await startInstance(t, h.fake, h.redis.url)]) {
      // Each refusal is followed by a real (inactive) answer written over the forgery: write it again.
      await h.inspect.set(name!, forged, 'PX', 60_000);
      t.notOk((await check(replica, mallory)).allowed, `forgery ${index + 1} denied`);
      checks += 1;
    }
  }
  t.equal(h.introspections(), 1 + checks, 'every Check met by a forged entry went to the authorization server');
  t.match(await metric(h.b, 'authz_shared_cache_lookups_total'), /result="refused"} 1/, 'and counted it as refused');
});

// Inactive answers are not cached here: a denial must come from reading Redis, not from a negative entry in memory.
const NO_NEGATIVE = { cache: { negativeTTL: 0 } };

t.test('writing a captured value back does not undo an eviction', async (t) => {
  const h = await start(t, true, NO_NEGATIVE);
  const alice = token('alice');
  h.active.add(alice);
  t.ok((await check(h.a, alice)).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 1));
  const [name] = await h.inspect.keys('test:*');
  const captured = (await h.inspect.getBuffer(name!))!;
  t.ok((await check(h.b, alice)).allowed, 'the second replica holds it too');

  h.active.delete(alice);
  t.equal(await evict(h.a, alice), 200);
  t.ok(await eventually(async () => !(await check(h.b, alice)).allowed), 'the eviction reached the other replica');
  t.notOk((await check(h.a, alice)).allowed);
  t.equal(await h.inspect.exists(name!), 0, 'gone from Redis');

  await h.inspect.set(name!, captured, 'PX', 60_000);
  const calls = h.introspections();
  t.notOk((await check(h.a, alice)).allowed, 'replayed: denied on the evicting replica');
  t.notOk((await check(h.b, alice)).allowed, 'replayed: denied on the replica that heard of the eviction');
  t.equal(h.introspections(), calls + 2, 'both asked the authorization server');

  // The same after an eviction of everything.
  const bob = token('bob');
  h.active.add(bob);
  t.ok((await check(h.a, bob)).allowed);
  t.ok(await eventually(async () => (await h.inspect.keys('test:*')).length >= 1));
  const bobName = (await h.inspect.keys('test:*')).find((key) => key !== name)!;
  const bobValue = (await h.inspect.getBuffer(bobName))!;
  h.active.delete(bob);
  t.equal(await evict(h.b, null), 200);
  t.ok(await eventually(async () => !(await check(h.a, bob)).allowed), 'evict all reached the other replica');
  await h.inspect.set(bobName, bobValue, 'PX', 60_000);
  t.notOk((await check(h.a, bob)).allowed, 'replayed after evict all: denied on the replica that heard of it');
  t.notOk((await check(h.b, bob)).allowed, 'replayed after evict all: denied on the evicting replica');
});

t.test('a call under way during an eviction cannot bring the old answer back through Redis', async (t) => {
  const h = await start(t, true, NO_NEGATIVE);
  // Replica c reaches Redis through a relay that can hold back what Redis sends it: the eviction
  // message among it, so c's call can end between the eviction and c hearing of it.
  const relay = await startTcpProxy(h.redis.port);
  t.teardown(() => relay.close());
  const c = await startInstance(t, h.fake, `redis://127.0.0.1:${relay.port}`, NO_NEGATIVE);
  const listener = new Redis(h.redis.url, { maxRetriesPerRequest: 1 });
  listener.on('error', () => {});
  t.teardown(() => listener.disconnect());
  const published: string[] = [];
  listener.on('message', (_channel: string, message: string) => published.push(message));
  await listener.subscribe('test:evictions');

  const alice = token('alice');
  h.active.add(alice);
  let open!: () => void;
  h.gates.set(alice, new Promise<void>((resolve) => (open = resolve)));
  const pending = check(c, alice);
  // The authorization server has the question (c's Redis lookup is over), and will say "active".
  await h.fake.waitForRequests(1, 5000);
  relay.hold();

  h.active.delete(alice);
  t.equal(await evict(h.a, alice), 200);
  t.ok(await eventually(() => published.length === 1), 'the eviction was published (so Redis deleted first)');
  open();
  t.ok((await pending).allowed, 'the call under way answers as it was told');
  t.ok(await eventually(async () => (await keyCount(h)) === 1), "c wrote that answer to Redis after the eviction");

  const calls = h.introspections();
  t.notOk((await check(h.a, alice)).allowed, 'denied on the evicting replica');
  t.notOk((await check(h.b, alice)).allowed, 'denied on a replica that heard of the eviction');
  relay.release();
  t.ok(await eventually(async () => !(await check(c, alice)).allowed), 'denied on c once it hears of the eviction');
  t.ok(h.introspections() >= calls + 3, 'each asked the authorization server');
});

t.test('Redis stopped during an eviction: 202, denied here at once; restarted: denied everywhere', async (t) => {
  const h = await start(t);
  const alice = token('alice');
  h.active.add(alice);
  t.ok((await check(h.a, alice)).allowed);
  t.ok((await check(h.b, alice)).allowed);
  t.equal(h.introspections(), 1);

  await h.redis.kill();
  h.active.delete(alice);
  t.equal(await evict(h.a, alice), 202, 'the cluster-wide part did not complete: not 200');
  t.notOk((await check(h.a, alice)).allowed, 'denied at once where it was asked');

  await h.redis.restart();
  t.ok(await eventually(async () => !(await check(h.b, alice)).allowed, 5000, 20), 'denied at the other instance once Redis is back');
  t.ok(await eventually(() => h.a.app.authorizer.shared?.pendingEvictions.keys === 0, 5000), 'nothing left to send');
  t.equal(await evict(h.a, alice), 200, 'with Redis up again an eviction is complete');
});

t.test('an instance cut off from Redis: its eviction is 202, kept, and reaches the other instance once the link is back', async (t) => {
  const h = await start(t);
  const relay = await startTcpProxy(h.redis.port);
  t.teardown(() => relay.close());
  const c = await startInstance(t, h.fake, `redis://127.0.0.1:${relay.port}`);
  const alice = token('alice');
  h.active.add(alice);
  t.ok((await check(h.a, alice)).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 1));
  t.ok((await check(c, alice)).allowed, 'c holds the answer too');
  t.equal(h.introspections(), 1);

  relay.cut();
  h.active.delete(alice);
  t.equal(await evict(c, alice), 202);
  t.notOk((await check(c, alice)).allowed, 'denied at c');
  // The known limit while cut off: a holds the answer in memory and Redis still has it.
  t.ok((await check(h.a, alice)).allowed, 'a, still connected to Redis, has not heard of it yet');

  relay.restore();
  t.ok(await eventually(async () => !(await check(h.a, alice)).allowed, 5000, 20), 'a denies once c reaches Redis again');
  t.notOk((await check(h.b, alice)).allowed, 'b denies too (asked the endpoint, not the old entry)');
});
