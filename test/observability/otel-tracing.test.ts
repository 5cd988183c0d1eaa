/**
 * The SDK-backed tracer on its own, against an OTLP receiver on loopback:
 * key fetches (their own traces), shared cache lookups (children of the
 * Check), failures marked without their messages, and a shutdown that
 * flushes within its bound even when the collector hangs.
 */
import t from 'tap';
import { startOtlpReceiver } from '../support/otlp-receiver.js';
import { openTelemetryTracing } from '../../src/observability/otel-tracing.js';
import type { Decision } from '../../src/decision.js';

const receiver = await startOtlpReceiver();
t.teardown(() => receiver.close());
process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '500';

const warnings: unknown[] = [];

const tracing = openTelemetryTracing({ logger: { warn: (...args: unknown[]) => void warnings.push(args) } });
t.teardown(() => tracing.shutdown(1000));

const DENY: Decision = Object.freeze({
  allow: false,
  reason: 'policy_error',
  policy: 'p',
  status: 500,
  challenge: null,
  bearerError: null,
  description: 'd',
  endpoint: null,
  cache: 'none',
}) as Decision;

t.test('a key fetch: a span of its own trace; a failed one is marked with the error class only', async (t) => {
  t.equal(await tracing.keyFetch('idp', async () => 'keys'), 'keys');
  const secret = 'a message that may quote the endpoint';
  await t.rejects(tracing.keyFetch('idp', async () => Promise.reject(new TypeError(secret))), TypeError, 'the error goes on unchanged');
  const ok = await receiver.waitForSpan((s) => s.name === 'fetch keys' && s.attributes['error.type'] === undefined);
  t.equal(ok.parentSpanId, '', 'a root span');
  t.equal(ok.attributes['authz.endpoint'], 'idp');
  const failed = await receiver.waitForSpan((s) => s.name === 'fetch keys' && s.attributes['error.type'] === 'TypeError');
  t.not(failed.traceId, ok.traceId, 'each its own trace');
  t.notOk(receiver.bodies.join('').includes(secret), 'no error message exported');
});

t.test('a shared cache lookup is a child of the Check; the Check span carries the decision', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const check = tracing.check({ get: (key) => (key === 'traceparent' ? [`00-${traceId}-00f067aa0ba902b7-01`] : []) }, undefined);
  t.equal(check.traceId, traceId, 'sampled: the exemplar trace id');
  t.equal(await check.lookup(async () => 42), 42);
  await t.rejects(check.lookup(async () => Promise.reject(new RangeError('redis said no'))), RangeError);
  check.end(DENY);
  const span = await receiver.waitForSpan((s) => s.traceId === traceId && s.name === 'envoy.service.auth.v3.Authorization/Check');
  t.equal(span.attributes['authz.reason'], 'policy_error');
  const lookups = await receiver.waitForSpan((s) => s.traceId === traceId && s.name === 'shared cache lookup' && s.attributes['error.type'] === 'RangeError');
  t.equal(lookups.parentSpanId, span.spanId);
  t.equal(receiver.spans.filter((s) => s.traceId === traceId && s.name === 'shared cache lookup').length, 2);

  const unsampled = tracing.check({ get: (key) => (key === 'traceparent' ? [`00-${traceId}-00f067aa0ba902b7-00`] : []) }, undefined);
  t.equal(unsampled.traceId, undefined, 'not sampled: no exemplar');
  const attempt = unsampled.introspection('idp').attempt('POST', 0);
  t.match(attempt.traceparent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`), 'the decision not to sample goes on');
  const root = tracing.subRequest('GET', {});
  t.equal(root.introspection('idp').attempt('GET', 0).traceparent?.endsWith('-01'), true, 'a sampled root announces itself');
});

t.test('shutdown: bounded even when the collector hangs; no Check waits on it', async (t) => {
  receiver.mode('hang');
  const check = tracing.subRequest('GET', {});
  check.end(DENY);
  const started = Date.now();
  await tracing.shutdown(300);
  t.ok(Date.now() - started < 3000, 'returns within its bound (loosely)');
});
