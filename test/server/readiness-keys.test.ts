/**
 * /readyz while an endpoint's key set is not loaded: not ready, naming the
 * endpoint and why, until the background retry loads it; the JWKS fetches and
 * failures are counted.
 */
import { exportJWK } from 'jose';
import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import { request } from 'undici';
import { startApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';

t.test('not ready until the keys are loaded', async (t) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' };
  let up = false;
  const keys = await startFakeAuthorizationServer(() => (up ? { json: { keys: [jwk] } } : { status: 503, json: {} }));
  t.teardown(() => keys.close());
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 } },
      log: { level: 'silent' },
      endpoints: [{ name: 'local', kind: 'jwt', issuer: keys.origin, jwksUri: `${keys.origin}/jwks`, audience: 'api', jwksCooldown: 0 }],
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const readyz = async () => {
    const answer = await request(`http://127.0.0.1:${app.ops.port}/readyz`);
    return { status: answer.statusCode, body: await answer.body.text() };
  };
  // The first fetch fails (503): bounded wait for it.
  for (let i = 0; i < 100 && keys.requests.length === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const before = await readyz();
  t.equal(before.status, 503);
  t.match(before.body, /keys not loaded: endpoint local: the key set could not be fetched: HTTP 503/);

  up = true;
  let after = before;
  for (let i = 0; i < 100 && after.status !== 200; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    after = await readyz();
  }
  t.equal(after.status, 200, 'ready once the background retry loaded the keys');
  const metrics = await app.metrics.registry.metrics();
  t.match(metrics, /authz_jwks_fetches_total\{endpoint="local",result="failure"\} [1-9]/);
  t.match(metrics, /authz_jwks_fetches_total\{endpoint="local",result="success"\} 1/);
});
