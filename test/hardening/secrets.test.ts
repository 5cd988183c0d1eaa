// Secrets: a run through everything that can go right and wrong (valid,
// inactive, garbage answers, HTTP errors, a black hole, a refused connection,
// malformed credentials, an unknown policy, the admin route with right and
// wrong credentials) at log level debug, with every log line, the /metrics
// text, every deny and every admin answer captured; none of them may hold a
// token, the client secret, the authorizationValue, the admin token or an
// Authorization value we sent.
import { Writable } from 'node:stream';
import t from 'tap';
import { request } from 'undici';
import { startApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, type UpstreamCheckResponse } from '../support/envoy.js';
import { startFakeAuthorizationServer, type FakeHandler } from '../support/fake-authorization-server.js';

const CLIENT_SECRET = 'clientSECRET-7f3a9c1e5b2d4a6f';
const AUTHORIZATION_VALUE_SECRET = 'YXV0aHo6dmFsdWVTRUNSRVQ5OTk';
const ADMIN_TOKEN = 'adminTOKEN-d41d8cd98f00b204';
const HEADER_SECRET = 'apikeySECRET-0a1b2c3d4e5f';
const VALID = 'validTOKEN-aaaaaaaaaaaaaaaaaaaa';
const INACTIVE = 'inactiveTOKEN-bbbbbbbbbbbbbbbbbbbb';
const GARBAGE = 'garbageTOKEN-cccccccccccccccccccc';
const ERROR = 'errorTOKEN-dddddddddddddddddddd';
const SLOW = 'slowTOKEN-eeeeeeeeeeeeeeeeeeee';
const ECHO = 'echoTOKEN-ffffffffffffffffffff';
const REFUSED = 'refusedTOKEN-gggggggggggggggggggg';
const GET_TOKEN = 'getTOKEN-hhhhhhhhhhhhhhhhhhhhhhh';
const LONG = `longTOKEN-${'i'.repeat(200)}`;
const SPACED = 'spacedTOKEN-jjjjjjjjjjjjjj';
const BADCHARS = 'badcharsTOKEN-kkkkkkkkkkkkkk';

t.test('no token or secret in logs, metrics, deny bodies or admin answers', async (t) => {
  const answers: Record<string, ReturnType<FakeHandler>> = {
    [VALID]: { json: { active: true, sub: 'alice', client_id: 'app' } },
    [GARBAGE]: { body: `<html>${GARBAGE} not json</html>`, headers: { 'content-type': 'text/html' } },
    [ERROR]: { status: 500, body: `internal error for ${ERROR}` },
    [SLOW]: { blackHole: true },
    // A server that echoes the token in a non-RFC member of an inactive answer.
    [ECHO]: { json: { active: false, token: ECHO } },
  };
  const fake = await startFakeAuthorizationServer((req) => {
    const token = req.body.get('token') ?? new URL(req.path, 'http://x').searchParams.get('token') ?? '';
    return answers[token] ?? { json: { active: false } };
  });
  t.teardown(() => fake.close());
  // A port nothing listens on: a refused connection (loopback only).
  const closed = await startFakeAuthorizationServer();
  const refusedUrl = closed.url;
  await closed.close();

  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, maxTokenLength: 128 },
      log: { level: 'debug', decisions: 'all', identity: false },
      admin: { token: ADMIN_TOKEN },
      cache: { negativeTTL: 0 },
      endpoints: [
        {
          name: 'basic',
          url: fake.url,
          authMethod: 'client_secret_basic',
          clientId: 'ext-authz',
          clientSecret: CLIENT_SECRET,
          headers: { 'x-api-key': HEADER_SECRET },
          authenticationTimeout: 300,
        },
        { name: 'value', url: fake.url, authorizationValue: `Basic ${AUTHORIZATION_VALUE_SECRET}`, authenticationTimeout: 300 },
        { name: 'post', url: fake.url, authMethod: 'client_secret_post', clientId: 'ext-authz', clientSecret: CLIENT_SECRET },
        { name: 'get', url: fake.url, method: 'GET', authMethod: 'client_secret_basic', clientId: 'ext-authz', clientSecret: CLIENT_SECRET },
        { name: 'refused', url: refusedUrl, method: 'GET', authMethod: 'client_secret_basic', clientId: 'ext-authz', clientSecret: CLIENT_SECRET },
      ],
      policies: [
        { name: 'basic', endpoint: 'basic' },
        { name: 'value', endpoint: 'value' },
        { name: 'post', endpoint: 'post' },
        { name: 'get', endpoint: 'get' },
        { name: 'refused', endpoint: 'refused' },
      ],
      defaultPolicy: 'basic',
    },
    'secrets.yaml',
    { env: {} },
  );
  const app = await startApp(config, createLogger('debug', destination));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  const ops = `http://127.0.0.1:${app.ops.port}`;
  const adminUrl = `http://127.0.0.1:${app.admin!.port}`;

  const outputs: string[] = [];
  const authorizationValues: string[] = [];
  let allows = 0;
  async function check(authorization: string, policy = 'basic', raw = false): Promise<UpstreamCheckResponse> {
    authorizationValues.push(authorization);
    const response = await envoy.check(
      raw
        ? { rawHeaders: [['authorization', authorization]], contextExtensions: { policy } }
        : { headers: { authorization }, contextExtensions: { policy } },
    );
    if (response.status?.code === 0) allows += 1;
    outputs.push(JSON.stringify(response));
    return response;
  }

  for (const policy of ['basic', 'value', 'post', 'get']) {
    for (const token of [VALID, VALID, INACTIVE, GARBAGE, ERROR, ECHO]) await check(`Bearer ${token}`, policy);
  }
  await check(`Bearer ${SLOW}`, 'basic');
  await check(`Bearer ${SLOW}`, 'value');
  await check(`Bearer ${REFUSED}`, 'refused');
  await check(`Bearer ${REFUSED}`, 'refused');
  await check(`Bearer ${GET_TOKEN}`, 'get');
  await check(`Bearer ${LONG}`);
  await check(`Bearer ${SPACED} ${SPACED}`);
  await check(`Bearer ${BADCHARS}"\u00e9`, 'basic', true);
  await check(`Basic ${Buffer.from(`user:${SPACED}`).toString('base64')}`);
  await check(`Bearer ${VALID},Bearer ${INACTIVE}`);
  await check(`Bearer ${VALID}`, 'no-such-policy');
  t.equal(allows, 8, 'the valid token is allowed at every endpoint (twice each)');

  // The admin route: wrong credentials, then evictions by token and of everything.
  const admin = async (authorization: string, body: string, query = ''): Promise<number> => {
    const response = await request(`${adminUrl}/cache${query}`, {
      method: 'DELETE',
      headers: { authorization, 'content-type': 'application/json' },
      body,
    });
    outputs.push(await response.body.text(), JSON.stringify(response.headers));
    return response.statusCode;
  };
  t.equal(await admin(`Bearer ${ADMIN_TOKEN}x`, JSON.stringify({ token: VALID })), 401, 'wrong admin token refused');
  t.equal(await admin(`Bearer ${VALID}`, JSON.stringify({ token: VALID })), 401, 'a bearer token is no admin token');
  t.equal(await admin(`Bearer ${ADMIN_TOKEN}`, JSON.stringify({ token: VALID })), 200, 'one token evicted');
  t.equal(await admin(`Bearer ${ADMIN_TOKEN}`, JSON.stringify({ token: INACTIVE })), 200);
  t.equal(await admin(`Bearer ${ADMIN_TOKEN}`, `{"token": "${GARBAGE}`), 400, 'a broken body');
  t.equal(await admin(`Bearer ${ADMIN_TOKEN}`, '', '?all=true'), 200, 'everything evicted');

  const metrics = await (await request(`${ops}/metrics`)).body.text();
  outputs.push(metrics);
  t.match(metrics, /decisions_total|decision/, 'metrics were read');

  // Let pino flush what it holds.
  await new Promise((resolve) => setImmediate(resolve));
  const logText = logs.join('');
  t.ok(logs.length >= 30, `${logs.length} log lines captured`);
  // In process, debug adds nothing yet (grpc-js's own lines are wired in main.ts, scanned by
  // test/server/shutdown.test.ts); every decision line, with its detail, is here.
  for (const reason of ['ok', 'inactive', 'bad_response', 'introspection_error', 'invalid_request', 'missing_token', 'policy_error']) {
    t.match(logText, `"reason":"${reason}"`, `a ${reason} decision was logged`);
  }
  t.match(logText, /admin request refused/, 'the refused admin requests were logged');

  const secrets = new Map<string, string>([
    ['client secret', CLIENT_SECRET],
    ['client secret, form-encoded', encodeURIComponent(CLIENT_SECRET)],
    ['basic credential', Buffer.from(`ext-authz:${CLIENT_SECRET}`).toString('base64')],
    ['authorizationValue', AUTHORIZATION_VALUE_SECRET],
    ['static header', HEADER_SECRET],
    ['admin token', ADMIN_TOKEN],
  ]);
  for (const token of [VALID, INACTIVE, GARBAGE, ERROR, SLOW, ECHO, REFUSED, GET_TOKEN, LONG, SPACED, BADCHARS]) {
    secrets.set(`token ${token.slice(0, 12)}`, token);
    // Any long enough piece of it (a log line could cut or escape it).
    secrets.set(`token ${token.slice(0, 12)} (prefix)`, token.slice(0, 16));
  }
  for (const value of authorizationValues) secrets.set(`authorization value ${value.slice(0, 20)}`, value);
  const places: Array<[string, string]> = [
    ['logs', logText],
    ['responses and admin answers', outputs.join('\n')],
    ['metrics', metrics],
  ];
  for (const [where, text] of places) {
    for (const [what, secret] of secrets) {
      // The bad-characters token is sent as raw bytes with a quote: look for its JSON-escaped form too.
      if (text.includes(secret) || text.includes(JSON.stringify(secret).slice(1, -1))) t.fail(`${what} appears in ${where}`);
    }
  }
  t.pass(`${secrets.size} secrets checked in ${logs.length} log lines, ${outputs.length} answers and the metrics`);
});
