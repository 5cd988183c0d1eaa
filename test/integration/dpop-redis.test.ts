/**
 * A DPoP proof replayed at another replica (RFC 9449 section 11.1): two
 * service instances sharing a real redis-server, a DPoP-bound token from
 * oidc-provider. Without the shared tier each replica knows only its own
 * proofs, which the last case shows; with it, the second use is refused
 * wherever it lands, and Redis holds neither jti nor thumbprint in clear.
 */
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import type { RedisReplayStore } from '../../src/credentials/replay-store.js';
import { createLogger } from '../../src/observability/logger.js';
import { startAuthorizationServer } from '../support/authorization-server.js';
import { createDpopKey, makeProof } from '../support/dpop.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

const KEY_SECRET = 'dpop-replay-key-secret-0123456789-abcdef';

const as = await startAuthorizationServer();
t.teardown(() => as.close());
const key = await createDpopKey('ES256');

interface Instance {
  app: App;
  envoy: EnvoyClient;
}

async function startInstance(t: Test, redis: RedisServer | null): Promise<Instance> {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 1000 },
      log: { level: 'silent' },
      endpoints: [
        {
          name: 'oidc',
          url: as.introspectionUrl,
          authMethod: 'client_secret_basic',
          clientId: as.introspectors.basic.clientId,
          clientSecret: as.introspectors.basic.clientSecret,
        },
      ],
      ...(redis ? { redis: { url: redis.url, keySecret: KEY_SECRET, keyPrefix: 'test:', timeout: 500 } } : {}),
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  if (redis) {
    const replay = app.authorizer.sender.replay as RedisReplayStore;
    const deadline = Date.now() + 5000;
    while (!replay.connected || app.authorizer.shared?.connected !== true) {
      if (Date.now() > deadline) throw new Error('no connection to Redis');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy };
}

const check = (instance: Instance, token: string, proof: string) =>
  instance.envoy.check({ path: '/orders/42', headers: { authorization: `DPoP ${token}`, dpop: proof } });

t.test('a proof used at one replica is refused at the other', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const a = await startInstance(t, redis);
  const b = await startInstance(t, redis);
  const token = await as.issueToken({ scope: 'read', dpop: key });
  const jti = 'jti-Vq3-unique-value-for-this-test';
  const proof = await makeProof(key, { token, jti });

  t.ok(summarize(await check(a, token, proof)).allowed, 'first use at A');
  const replayed = await check(b, token, proof);
  t.notOk(summarize(replayed).allowed, 'replay at B');
  t.equal(replayed.status?.message, 'dpop_replay');
  t.equal(summarize(await check(a, token, proof)).allowed, false, 'replay at A');
  t.ok(summarize(await check(b, token, await makeProof(key, { token }))).allowed, 'a fresh proof at B passes');

  const inspect = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  inspect.on('error', () => {});
  t.teardown(() => inspect.disconnect());
  const keys = await inspect.keys('test:dpop:*');
  t.equal(keys.length, 2, 'one record per accepted proof');
  for (const name of keys) {
    t.match(name, /^test:dpop:[0-9a-f]{64}$/, 'an HMAC name');
    t.notOk(name.includes(jti) || name.includes(key.thumbprint), 'neither jti nor thumbprint in clear');
    const ttl = await inspect.pttl(name);
    t.ok(ttl > 0 && ttl <= 60_000 + 1000, 'kept no longer than the proof window');
  }
});

t.test('with Redis gone, proofs are still checked at each replica', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const a = await startInstance(t, redis);
  await redis.kill();
  const token = await as.issueToken({ scope: 'read', dpop: key });
  const proof = await makeProof(key, { token });
  t.ok(summarize(await check(a, token, proof)).allowed, 'accepted on the local record');
  t.equal((await check(a, token, proof)).status?.message, 'dpop_replay', 'a replay at the same replica is still refused');
});

t.test('without the shared tier, replicas do not know each other\'s proofs', async (t) => {
  const a = await startInstance(t, null);
  const b = await startInstance(t, null);
  const token = await as.issueToken({ scope: 'read', dpop: key });
  const proof = await makeProof(key, { token });
  t.ok(summarize(await check(a, token, proof)).allowed);
  t.ok(summarize(await check(b, token, proof)).allowed, 'the replay at B passes: what the shared tier is for');
});
