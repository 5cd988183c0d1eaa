/**
 * tracing.enabled false (the default): no module of the OpenTelemetry SDK is
 * loaded, nothing is sent to the authorization server about traces, and
 * /metrics stays in the Prometheus text format whatever the scraper asks.
 */
import t from 'tap';
import { createRequire } from 'node:module';
import { startApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';

const TOKEN = 'tracing-off-token-0123456789';
const fake = await startFakeAuthorizationServer(answerByToken({ [TOKEN]: { sub: 'alice', scope: 'read' } }));
t.teardown(() => fake.close());
const app = await startApp(
  buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 500 },
      log: { level: 'silent' },
      endpoints: [{ name: 'idp', url: fake.url, authMethod: 'none' }],
    },
    'tracing-off test',
    { env: {} },
  ),
  createLogger('silent'),
);
t.teardown(() => app.stop());
const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
t.teardown(() => envoy.close());

/**
 * Modules of the SDK in the process. @opentelemetry/api is left out: prom-client loads it by
 * itself when it is installed (its process CPU counter can carry exemplars); it is the no-op API,
 * not the SDK.
 */
const loaded = () =>
  Object.keys(createRequire(import.meta.url).cache).filter((path) => path.includes('@opentelemetry') && !path.includes('@opentelemetry/api/'));

t.test('the SDK is never loaded, and nothing about traces goes to the endpoint', async (t) => {
  t.equal(app.config.tracing.enabled, false, 'off by default');
  const answer = summarize(
    await envoy.check({
      headers: { authorization: `Bearer ${TOKEN}`, traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` },
      metadata: { traceparent: `00-${'c'.repeat(32)}-${'d'.repeat(16)}-01` },
    }),
  );
  t.equal(answer.allowed, true);
  t.equal(fake.requests.length, 1);
  t.equal(fake.requests[0]!.headers.traceparent, undefined, 'no traceparent sent on');
  t.same(loaded(), [], 'no module of the SDK in the process');
  // The check above can see a loaded module: import one and look again.
  await import('@opentelemetry/core');
  t.ok(loaded().length > 0, 'a loaded one is seen');
});

t.test('metrics: the text format, no exemplars, even to a scraper asking for OpenMetrics', async (t) => {
  const response = await fetch(`http://127.0.0.1:${app.ops.port}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
  t.match(response.headers.get('content-type'), /^text\/plain/);
  const text = await response.text();
  t.notMatch(text, /# \{trace_id=/);
  t.notMatch(text, /authz_trace_export_failures_total [1-9]/, 'nothing exported, nothing failed');
});
