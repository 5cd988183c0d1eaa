/**
 * Tracing through the service's public surface: a client playing Envoy (with
 * and without trace context in the call's metadata and in the CheckRequest's
 * headers), an HTTP sub-request, a fake authorization server that records the
 * traceparent it is sent, and an OTLP/HTTP receiver on loopback taking what
 * the exporter sends. Parentage, bounded attributes, no token or subject in
 * the exported bytes, exemplars, and exports that fail without a Check noticing.
 */
import t from 'tap';
import { startApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { startOtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.js';
import { samples } from '../support/service-process.js';

const receiver = await startOtlpReceiver();
t.teardown(() => receiver.close());
// Read by the SDK when the service starts it (and by nothing else in this process).
process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '1000';
process.env.OTEL_SERVICE_NAME = 'authz-under-test';

const SUBJECT = 'alice-subject-7f3a';
const CLIENT = 'client-id-9c1e';
const TOKENS = Array.from({ length: 12 }, (_, i) => `tok-${i}-secret-${'q'.repeat(20)}`);
const FLAKY = `flaky-token-${'z'.repeat(20)}`;
const answers = answerByToken(Object.fromEntries([...TOKENS, FLAKY].map((token) => [token, { sub: SUBJECT, client_id: CLIENT, scope: 'read' }])));
let flakyCalls = 0;
// FLAKY's first call fails with a 503, which the client retries once (retries: 1, the default).
const fake = await startFakeAuthorizationServer((request) => {
  if (request.path === '/jwks') return { json: { keys: [] } };
  return request.body.get('token') === FLAKY && flakyCalls++ === 0 ? { status: 503 } : answers(request);
});
t.teardown(() => fake.close());

const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(reason));

const warnings: Array<Record<string, unknown>> = [];
const logger = createLogger('warn', {
  write: (line: string) => {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    if (parsed.level === 40 || parsed.level === 'warn') warnings.push(parsed);
  },
});
const app = await startApp(
  buildConfig(
    {
      server: {
        grpc: { host: '127.0.0.1', port: 0 },
        ops: { host: '127.0.0.1', port: 0 },
        http: { enabled: true, host: '127.0.0.1', port: 0 },
        shutdownTimeout: 1000,
      },
      log: { level: 'warn' },
      tracing: { enabled: true },
      endpoints: [
        { name: 'idp', url: fake.url, authMethod: 'none' },
        // Only for its key set, fetched at start: a span of its own trace.
        { name: 'local', kind: 'jwt', issuer: 'https://issuer.example', jwksUri: `${fake.origin}/jwks`, audience: 'api', allowInsecure: true },
      ],
      policies: [{ name: 'reader', endpoint: 'idp', scopes: 'read', identityHeader: 'x-user' }],
    },
    'tracing test',
    { env: {} },
  ),
  logger,
);
t.teardown(() => app.stop());
const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
t.teardown(() => envoy.close());

const hex = (length: number, digit: string) => digit.repeat(length);
const traceparent = (traceId: string, spanId: string, flags = '01') => `00-${traceId}-${spanId}-${flags}`;
const byTrace = (traceId: string, name?: string) => (span: ReceivedSpan) => span.traceId === traceId && (name === undefined || span.name === name);
const CHECK = 'envoy.service.auth.v3.Authorization/Check';

async function check(token: string, options: { metadata?: Record<string, string>; headers?: Record<string, string> } = {}) {
  const response = summarize(
    await envoy.check({ headers: { authorization: `Bearer ${token}`, ...options.headers }, metadata: options.metadata }),
  );
  return response;
}

/** The traceparent the fake authorization server was sent with the request about `token`. */
function sentTraceparent(token: string): string | undefined {
  const request = fake.requests.find((r) => r.body.get('token') === token);
  const value = request?.headers.traceparent;
  return typeof value === 'string' ? value : undefined;
}

t.test('parent from the call metadata: Check span, introspection child, attempt grandchild, traceparent sent on', async (t) => {
  const traceId = hex(32, 'a');
  const parent = hex(16, 'b');
  const answer = await check(TOKENS[0]!, { metadata: { traceparent: traceparent(traceId, parent), tracestate: 'envoy=1' } });
  t.equal(answer.allowed, true);

  const checkSpan = await receiver.waitForSpan(byTrace(traceId, CHECK));
  t.equal(checkSpan.parentSpanId, parent, 'the Check span is a child of the span in the metadata');
  t.equal(checkSpan.kind, 2, 'SERVER');
  t.equal(checkSpan.traceState, 'envoy=1');
  t.equal(checkSpan.service, 'authz-under-test', 'OTEL_SERVICE_NAME is read');
  t.match(checkSpan.attributes, {
    'authz.policy': 'reader',
    'authz.decision': 'allow',
    'authz.reason': 'ok',
    'authz.cache': 'miss',
    'authz.endpoint': 'idp',
    'authz.transport': 'grpc',
    'http.response.status_code': 200,
  });
  const flight = await receiver.waitForSpan(byTrace(traceId, 'introspect'));
  t.equal(flight.parentSpanId, checkSpan.spanId, 'the introspection is a child of the Check');
  t.match(flight.attributes, { 'authz.endpoint': 'idp', 'authz.outcome': 'active' });
  const attempt = await receiver.waitForSpan(byTrace(traceId, 'POST'));
  t.equal(attempt.parentSpanId, flight.spanId, 'the HTTP attempt is a child of the introspection');
  t.equal(attempt.kind, 3, 'CLIENT');
  t.equal(attempt.attributes['http.response.status_code'], 200);
  t.equal(sentTraceparent(TOKENS[0]!), traceparent(traceId, attempt.spanId), 'the endpoint is sent the attempt span as its parent');

  // The same token again: a cache hit starts no introspection.
  const again = hex(32, 'c');
  await check(TOKENS[0]!, { metadata: { traceparent: traceparent(again, parent) } });
  const hit = await receiver.waitForSpan(byTrace(again, CHECK));
  t.equal(hit.attributes['authz.cache'], 'hit');
  t.notOk(receiver.spans.some(byTrace(again, 'introspect')), 'no introspection span on a hit');
});

t.test('parent from the CheckRequest headers when the metadata has none; the metadata wins when both do', async (t) => {
  const fromHeaders = hex(32, 'd');
  await check(TOKENS[1]!, { headers: { traceparent: traceparent(fromHeaders, hex(16, 'e')) } });
  const span = await receiver.waitForSpan(byTrace(fromHeaders, CHECK));
  t.equal(span.parentSpanId, hex(16, 'e'));

  const metadataTrace = hex(32, '1');
  const headerTrace = hex(32, '2');
  await check(TOKENS[2]!, {
    metadata: { traceparent: traceparent(metadataTrace, hex(16, '3')) },
    headers: { traceparent: traceparent(headerTrace, hex(16, '4')) },
  });
  const both = await receiver.waitForSpan(byTrace(metadataTrace, CHECK));
  t.equal(both.parentSpanId, hex(16, '3'), "Envoy's ext_authz span, not the client's");

  const b3Trace = '463ac35c9f6413ad48485a3953bb6124';
  await check(TOKENS[3]!, { metadata: { b3: `${b3Trace}-a2fb4a1d1a96d312-1` } });
  const b3 = await receiver.waitForSpan(byTrace(b3Trace, CHECK));
  t.equal(b3.parentSpanId, 'a2fb4a1d1a96d312', 'B3 single header (Istio/Zipkin)');

  await check(TOKENS[4]!, { metadata: { traceparent: 'ff-' + hex(32, '5') + '-' + hex(16, '6') + '-01' } });
  const answered = await receiver.waitForSpan((s) => s.name === CHECK && s.attributes['authz.cache'] === 'miss' && s.parentSpanId === '' && sentTraceparent(TOKENS[4]!)?.includes(s.traceId) === true);
  t.not(answered.traceId, hex(32, '5'), 'version ff is refused: a new trace, not the given one');
});

t.test('a parent that is not sampled: no spans, and the endpoint is told not to sample either', async (t) => {
  const traceId = hex(32, '7');
  const answer = await check(TOKENS[5]!, { metadata: { traceparent: traceparent(traceId, hex(16, '8'), '00') } });
  t.equal(answer.allowed, true);
  const sent = sentTraceparent(TOKENS[5]!);
  t.match(sent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`), 'the trace id and the not-sampled flag go on');
  // A sampled Check after it, so a flush has surely happened before looking for the unsampled one.
  const later = hex(32, '9');
  await check(TOKENS[6]!, { metadata: { traceparent: traceparent(later, hex(16, '8')) } });
  await receiver.waitForSpan(byTrace(later, 'POST'));
  t.notOk(receiver.spans.some(byTrace(traceId)), 'nothing of the unsampled trace is exported');
});

t.test('an HTTP sub-request: its span, parented by its traceparent header', async (t) => {
  const traceId = hex(32, 'f');
  const response = await fetch(`http://127.0.0.1:${app.http!.port}/envoy/-/orders`, {
    headers: { authorization: `Bearer ${TOKENS[7]}`, traceparent: traceparent(traceId, hex(16, 'a')), host: 'api.example.com' },
  });
  t.equal(response.status, 200);
  const span = await receiver.waitForSpan(byTrace(traceId, 'authorize'));
  t.equal(span.parentSpanId, hex(16, 'a'));
  t.match(span.attributes, { 'authz.transport': 'http', 'authz.decision': 'allow', 'http.request.method': 'GET', 'authz.policy': 'reader' });
  const flight = await receiver.waitForSpan(byTrace(traceId, 'introspect'));
  t.equal(flight.parentSpanId, span.spanId);
});

t.test('a retried call: one span per attempt, each sending its own traceparent', async (t) => {
  const traceId = hex(32, '3');
  const answer = await check(FLAKY, { metadata: { traceparent: traceparent(traceId, hex(16, '5')) } });
  t.equal(answer.allowed, true);
  const flight = await receiver.waitForSpan(byTrace(traceId, 'introspect'));
  await receiver.waitForSpan((span) => byTrace(traceId, 'POST')(span) && span.attributes['http.request.resend_count'] === 1);
  const attempts = receiver.spans.filter(byTrace(traceId, 'POST'));
  t.equal(attempts.length, 2);
  t.ok(attempts.every((span) => span.parentSpanId === flight.spanId), 'both children of the introspection');
  const [first, second] = [attempts.find((s) => s.attributes['http.request.resend_count'] === undefined)!, attempts.find((s) => s.attributes['http.request.resend_count'] === 1)!];
  t.equal(first.attributes['http.response.status_code'], 503);
  t.equal(first.attributes['authz.outcome'], 'bad_response');
  t.equal(second.attributes['http.response.status_code'], 200);
  const sent = fake.requests.filter((r) => r.body.get('token') === FLAKY).map((r) => r.headers.traceparent);
  t.same(sent, [traceparent(traceId, first.spanId), traceparent(traceId, second.spanId)], 'each attempt announces itself');
});

t.test('a deny is traced with its reason', async (t) => {
  const traceId = hex(32, 'e');
  const answer = await check('not-a-known-token-zzzzzzzz', { metadata: { traceparent: traceparent(traceId, hex(16, 'b')) } });
  t.equal(answer.allowed, false);
  const span = await receiver.waitForSpan(byTrace(traceId, CHECK));
  t.match(span.attributes, { 'authz.decision': 'deny', 'authz.reason': 'inactive', 'http.response.status_code': 401 });
});

t.test('a key set fetch is a span of its own trace', async (t) => {
  const span = await receiver.waitForSpan((s) => s.name === 'fetch keys' && s.attributes['authz.endpoint'] === 'local');
  t.equal(span.parentSpanId, '', 'no Check waits on the fetch at start: a root span');
  t.equal(span.kind, 3, 'CLIENT');
});

t.test('no token, subject or client id anywhere in what was exported', async (t) => {
  const all = receiver.bodies.join('\n');
  t.ok(all.length > 0);
  for (const token of [...TOKENS, FLAKY, 'not-a-known-token-zzzzzzzz']) t.notOk(all.includes(token), 'no token');
  t.notOk(all.includes(SUBJECT), 'no subject');
  t.notOk(all.includes(CLIENT), 'no client id');
  t.notOk(all.includes('Bearer'), 'no authorization header');
});

t.test('exemplars: the trace id of a sampled Check in the OpenMetrics exposition; text format by default', async (t) => {
  const ops = `http://127.0.0.1:${app.ops.port}/metrics`;
  const open = await fetch(ops, { headers: { accept: 'application/openmetrics-text; version=1.0.0, text/plain;q=0.5' } });
  t.match(open.headers.get('content-type'), /^application\/openmetrics-text/);
  const text = await open.text();
  t.match(text, /\n# EOF\n$/);
  const exported = new Set(receiver.spans.map((span) => span.traceId));
  const checkExemplars = [...text.matchAll(/^authz_check_duration_seconds_bucket\{[^}]*\} \d+ # \{trace_id="([0-9a-f]{32})"\}/gm)].map((m) => m[1]);
  t.ok(checkExemplars.length > 0, 'Check latency buckets carry exemplars');
  t.ok(checkExemplars.every((id) => exported.has(id!)), 'each one a trace that was exported');
  t.match(text, /^authz_introspection_duration_seconds_bucket\{[^}]*endpoint="idp"[^}]*\} \d+ # \{trace_id="[0-9a-f]{32}"\}/m);
  t.match(text, /^authz_check_decisions_total\{/m, 'counters keep their _total');

  const plain = await fetch(ops);
  t.match(plain.headers.get('content-type'), /^text\/plain/);
  const body = await plain.text();
  t.notMatch(body, /# \{trace_id=/, 'no exemplars in the text format');
  t.match(body, /^authz_check_decisions_total\{/m, 'an OpenMetrics scrape does not rename the counters of the next text one');
});

t.test('exports that fail are harmless: collector answering 500, hanging, gone', async (t) => {
  let metricsText = '';
  const failures = async () => {
    metricsText = await (await fetch(`http://127.0.0.1:${app.ops.port}/metrics`)).text();
    return samples(metricsText).get('authz_trace_export_failures_total') ?? 0;
  };
  const waitForFailures = async (count: number) => {
    const until = Date.now() + 15_000;
    while ((await failures()) < count && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100));
    return failures();
  };
  const traced = { metadata: { traceparent: traceparent(hex(32, '4'), hex(16, '4')) } };

  receiver.mode('fail');
  t.equal((await check(TOKENS[8]!, traced)).allowed, true, '500: the Check is answered');
  t.ok((await waitForFailures(1)) >= 1, 'a refused export is counted');
  t.equal(warnings.filter((line) => line.msg === 'could not export spans; they are dropped').length, 1, 'and logged');

  receiver.mode('hang');
  const posts = receiver.posts;
  const started = Date.now();
  t.equal((await check(TOKENS[9]!, traced)).allowed, true, 'hanging collector: the Check is answered');
  t.ok(Date.now() - started < 1500, 'without waiting on the export');
  const until = Date.now() + 10_000;
  while (receiver.posts === posts && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(receiver.posts > posts, 'an export was under way');

  // Gone while an export hangs: that one fails, as every later one does.
  await receiver.close();
  t.equal((await check(TOKENS[10]!, traced)).allowed, true, 'collector gone: the Check is answered');
  t.ok((await waitForFailures(2)) >= 2, 'failed exports are counted');
  t.equal(warnings.filter((line) => line.msg === 'could not export spans; they are dropped').length, 1, 'logged at most once a minute');
  t.same(unhandled, [], 'no unhandled rejection');
});
