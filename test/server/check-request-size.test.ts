// How big a CheckRequest may be, played with the upstream Envoy protos. Envoy
// sends a request body only with with_request_body (up to its
// max_request_bytes), on top of up to max_request_headers_kb of headers. Once
// the limit was a fixed 4 MiB: a larger CheckRequest was a failed RPC
// (RESOURCE_EXHAUSTED), which Envoy with failure_mode_allow: true lets through.
// Now the limit is server.grpc.maxCheckRequestBytes (16 MiB by default);
// grpc-js fails a larger message before any handler sees it, so the deployment
// must keep Envoy's limits under it (README: the option's row).
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { startApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { buildCheckRequest, connectEnvoy, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';

const TOKEN = 'size-test-token-Lk2v8QwE5r';
const MiB = 1024 * 1024;

async function start(t: Test, grpcOptions: Record<string, unknown> = {}) {
  const fake = await startFakeAuthorizationServer(answerByToken({ [TOKEN]: { sub: 'alice' } }));
  t.teardown(() => fake.close());
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0, ...grpcOptions }, ops: { host: '127.0.0.1', port: 0 } },
      log: { level: 'silent' },
      endpoints: [{ name: 'idp', url: fake.url, authMethod: 'none' }],
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  /** A Check whose request carries `bytes` of body, as Envoy sends it with with_request_body. */
  const checkWithBody = (token: string, bytes: number) => {
    const request = buildCheckRequest({ headers: { authorization: `Bearer ${token}` }, method: 'POST' }) as {
      attributes: { request: { http: Record<string, unknown> } };
    };
    request.attributes.request.http.body = 'b'.repeat(bytes);
    request.attributes.request.http.size = String(bytes);
    return envoy.checkRaw(request, 10_000).then(summarize);
  };
  return { checkWithBody };
}

t.test('a CheckRequest larger than 4 MiB is decided, allow or deny, not a failed RPC', async (t) => {
  const { checkWithBody } = await start(t);
  const allowed = await checkWithBody(TOKEN, 6 * MiB);
  t.equal(allowed.allowed, true, 'a good token with a 6 MiB body is allowed');
  const denied = await checkWithBody('size-test-unknown-token-Pz9', 6 * MiB);
  t.same([denied.allowed, denied.httpStatus], [false, 401], 'an unknown token with a 6 MiB body is a deny');
  const near = await checkWithBody(TOKEN, 16 * MiB - 64 * 1024);
  t.equal(near.allowed, true, 'just under the default limit: decided');
});

t.test('above maxCheckRequestBytes: the RPC fails with RESOURCE_EXHAUSTED (what Envoy must never send)', async (t) => {
  const { checkWithBody } = await start(t, { maxCheckRequestBytes: MiB });
  t.equal((await checkWithBody(TOKEN, MiB - 64 * 1024)).allowed, true, 'under the limit: decided');
  const error = await checkWithBody(TOKEN, MiB + 1).then(
    () => null,
    (failure: grpc.ServiceError) => failure,
  );
  t.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED, 'over it: a failed RPC, not an answer');
});
