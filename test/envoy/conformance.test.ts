// Plays Envoy against the running service with the UPSTREAM Envoy protos
// (@grpc/grpc-js-xds deps/envoy-api): every CheckRequest is encoded and every
// CheckResponse decoded with Envoy's own definitions, so a field number or
// type that drifted in our protos/ would show up here as a wrong decode.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import {
  buildCheckRequest,
  connectEnvoy,
  healthClientConstructor,
  type CheckOptions,
  type EnvoyClient,
  structToJson,
  type UpstreamCheckResponse,
  upstreamDefinitions,
} from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';

const GOOD = 'good-token-Q1w2E3r4';
const INACTIVE = 'revoked-token-Z9x8';
const EXP = Math.floor(Date.now() / 1000) + 3600;
const CLAIMS = { sub: 'alice', username: 'alice@example.com', client_id: 'app-one', scope: 'read write', exp: EXP };

const OVERWRITE = 'OVERWRITE_IF_EXISTS_OR_ADD';

const fake = await startFakeAuthorizationServer(answerByToken({ [GOOD]: CLAIMS, [INACTIVE]: { active: false } }));
t.teardown(() => fake.close());

async function startService(t: Test, overrides: Record<string, unknown> = {}): Promise<{ app: App; envoy: EnvoyClient }> {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 1_000 },
      log: { level: 'silent' },
      // No cache: every Check asks the fake server, so what it was sent can be asserted.
      cache: { validatedTokenTTL: 0 },
      endpoints: [{ name: 'main', url: fake.url, clientId: 'authz-service', clientSecret: 's3cret', authenticationTimeout: 2_000 }],
      policies: [
        { name: 'default' },
        { name: 'partner', realm: 'partners', identityHeader: 'x-partner-id', mappedIdentity: 'partner:{client_id}' },
      ],
      defaultPolicy: 'default',
      ...overrides,
    },
    'conformance test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy };
}

const { app, envoy } = await startService(t);

type HeaderOption = NonNullable<UpstreamCheckResponse['ok_response']>['headers'][number];

function headerMap(t: Test, options: HeaderOption[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const option of options) {
    const key = option.header.key;
    t.equal(option.append?.value, false, `${key}: append is BoolValue{false}`);
    t.equal(option.append_action, OVERWRITE, `${key}: append_action is ${OVERWRITE}`);
    t.equal(option.header.raw_value.length, 0, `${key}: value, not raw_value, carries the value`);
    t.notOk(key in map, `${key} is set once`);
    map[key] = option.header.value;
  }
  return map;
}

interface ExpectAllow {
  header: string;
  identity: string;
  removed: string[];
}

function assertAllow(t: Test, res: UpstreamCheckResponse, expected: ExpectAllow): void {
  t.equal(res.status?.code, 0, 'status.code 0 (allow)');
  t.equal(res.http_response, 'ok_response', 'http_response is ok_response');
  t.notOk(res.denied_response, 'no denied_response');
  const ok = res.ok_response!;
  t.same(headerMap(t, ok.headers), { [expected.header]: expected.identity }, 'exactly the identity header is set');
  t.same([...ok.headers_to_remove].sort(), [...expected.removed].sort(), 'headers_to_remove lists the spoofed headers');
  t.notOk(ok.headers_to_remove.includes(expected.header), 'the header we set is not also removed');
  t.same(ok.response_headers_to_add, [], 'nothing added to the response');
  t.same(ok.query_parameters_to_set, [], 'no query parameter set');
  t.same(ok.query_parameters_to_remove, [], 'no query parameter removed');
  t.equal(res.dynamic_metadata?.fields.identity?.stringValue, expected.identity, 'dynamic_metadata identity');
  t.equal(res.dynamic_metadata?.fields.identity?.kind, 'stringValue');
}

interface ExpectDeny {
  /** envoy.type.v3.StatusCode enum name */
  http: string;
  rpc: number;
  challenge: string | null;
  error: string;
  description: string;
}

function assertDeny(t: Test, res: UpstreamCheckResponse, expected: ExpectDeny): void {
  t.not(res.status?.code ?? 0, 0, 'status.code is not 0 (deny)');
  t.equal(res.status?.code, expected.rpc, `status.code ${expected.rpc}`);
  t.equal(res.http_response, 'denied_response', 'http_response is denied_response');
  t.notOk(res.ok_response, 'no ok_response');
  const denied = res.denied_response!;
  t.equal(denied.status?.code, expected.http, `denied_response.status.code ${expected.http}`);
  const headers = headerMap(t, denied.headers);
  t.equal(headers['content-type'], 'application/json');
  t.equal(headers['cache-control'], 'no-store');
  if (expected.challenge === null) t.notOk('www-authenticate' in headers, 'no WWW-Authenticate');
  else t.equal(headers['www-authenticate'], expected.challenge, 'WWW-Authenticate');
  t.same(Object.keys(headers).sort(), ['cache-control', 'content-type', ...(expected.challenge ? ['www-authenticate'] : [])]);
  let body: unknown;
  t.doesNotThrow(() => (body = JSON.parse(denied.body)), 'body is JSON');
  t.same(body, { error: expected.error, error_description: expected.description }, 'body');
}

const INVALID_TOKEN: ExpectDeny = {
  http: 'Unauthorized',
  rpc: grpc.status.UNAUTHENTICATED,
  challenge: 'Bearer realm="api", error="invalid_token", error_description="the token is not active"',
  error: 'invalid_token',
  description: 'the token is not active',
};

const MISSING: ExpectDeny = {
  http: 'Unauthorized',
  rpc: grpc.status.UNAUTHENTICATED,
  challenge: 'Bearer realm="api"',
  error: 'missing_token',
  description: 'a bearer token is required',
};

function invalidRequest(description: string): ExpectDeny {
  return {
    http: 'BadRequest',
    rpc: grpc.status.INVALID_ARGUMENT,
    challenge: `Bearer realm="api", error="invalid_request", error_description="${description}"`,
    error: 'invalid_request',
    description,
  };
}

const SPOOFED = { 'x-auth-subject': 'mallory', x_auth_subject: 'mallory', 'x-auth-roles': 'admin' };

t.test('headers map (merged, with pseudo-headers): allow with the identity header set and spoofs removed', async (t) => {
  const before = fake.requests.length;
  const res = await envoy.check({ headers: { authorization: `Bearer ${GOOD}`, ...SPOOFED } });
  assertAllow(t, res, { header: 'x-auth-subject', identity: 'alice', removed: ['x_auth_subject', 'x-auth-roles'] });
  t.equal(fake.requests.length, before + 1, 'one introspection request');
  const sent = fake.requests.at(-1)!;
  t.equal(sent.body.get('token'), GOOD, 'the bearer token was introspected');
  t.equal(sent.body.get('token_type_hint'), 'access_token');
  t.equal(sent.headers.authorization, `Basic ${Buffer.from('authz-service:s3cret').toString('base64')}`);
});

t.test('header_map (raw_value bytes, unmerged): the same allow', async (t) => {
  const before = fake.requests.length;
  const request = buildCheckRequest({
    rawHeaders: [['authorization', `Bearer ${GOOD}`], ...Object.entries(SPOOFED), ['x-request-id', 'req-1']],
  }) as { attributes: { request: { http: Record<string, unknown> } } };
  // What is sent really is Envoy's encode_raw_headers form: no merged map, bytes in raw_value.
  const http = request.attributes.request.http;
  t.notOk('headers' in http, 'no merged headers map');
  const entries = (http.header_map as { headers: Array<{ key: string; raw_value: Buffer; value?: string }> }).headers;
  t.ok(entries.every((e) => Buffer.isBuffer(e.raw_value) && e.value === undefined), 'every value is raw_value bytes');
  t.ok(entries.some((e) => e.key === ':path'), 'pseudo-headers included');
  const res = await envoy.checkRaw(request);
  assertAllow(t, res, { header: 'x-auth-subject', identity: 'alice', removed: ['x_auth_subject', 'x-auth-roles'] });
  t.equal(fake.requests.length, before + 1);
  t.equal(fake.requests.at(-1)!.body.get('token'), GOOD);
});

t.test('header_map with a non-ASCII raw value and a value-only entry', async (t) => {
  // raw_value carries UTF-8 bytes; the identity header is set from the claims, not from these.
  const request = buildCheckRequest({ rawHeaders: [['authorization', `Bearer ${GOOD}`], ['x-auth-name', 'Zoë']] }) as {
    attributes: { request: { http: { header_map: { headers: Array<Record<string, unknown>> } } } };
  };
  request.attributes.request.http.header_map.headers.push({ key: 'x-auth-extra', value: 'set via value' });
  const res = await envoy.checkRaw(request);
  assertAllow(t, res, { header: 'x-auth-subject', identity: 'alice', removed: ['x-auth-name', 'x-auth-extra'] });
});

t.test('lower-case "bearer" scheme is accepted (RFC 6750: case-insensitive)', async (t) => {
  const res = await envoy.check({ headers: { authorization: `bearer ${GOOD}` } });
  assertAllow(t, res, { header: 'x-auth-subject', identity: 'alice', removed: [] });
});

t.test('inactive token: 401 invalid_token', async (t) => {
  for (const [name, options] of [
    ['headers', { headers: { authorization: `Bearer ${INACTIVE}`, ...SPOOFED } }],
    ['header_map', { rawHeaders: [['authorization', `Bearer ${INACTIVE}`]] }],
    ['unknown token', { headers: { authorization: 'Bearer never-issued' } }],
  ] as Array<[string, CheckOptions]>) {
    await t.test(name, async (t) => assertDeny(t, await envoy.check(options), INVALID_TOKEN));
  }
});

t.test('no Authorization header: 401 with a realm-only challenge, nothing introspected', async (t) => {
  const before = fake.requests.length;
  assertDeny(t, await envoy.check({ headers: {} }), MISSING);
  assertDeny(t, await envoy.check({ rawHeaders: [] }), MISSING);
  // Another scheme is not a bearer credential at all.
  assertDeny(t, await envoy.check({ headers: { authorization: 'Basic dXNlcjpwYXNz' } }), MISSING);
  t.equal(fake.requests.length, before, 'the endpoint was not asked');
});

t.test('"Bearer" with no token: 400 invalid_request', async (t) => {
  const before = fake.requests.length;
  const expected = invalidRequest('the bearer token is empty');
  assertDeny(t, await envoy.check({ headers: { authorization: 'Bearer' } }), expected);
  assertDeny(t, await envoy.check({ rawHeaders: [['authorization', 'Bearer ']] }), expected);
  t.equal(fake.requests.length, before, 'the endpoint was not asked');
});

t.test('two Authorization lines: 400 invalid_request, no token introspected', async (t) => {
  const before = fake.requests.length;
  // header_map keeps them apart...
  assertDeny(
    t,
    await envoy.check({ rawHeaders: [['authorization', `Bearer ${GOOD}`], ['authorization', `Bearer ${INACTIVE}`]] }),
    invalidRequest('more than one Authorization header'),
  );
  assertDeny(
    t,
    await envoy.check({ rawHeaders: [['authorization', 'Basic dXNlcjpwYXNz'], ['authorization', `Bearer ${GOOD}`]] }),
    invalidRequest('more than one Authorization header'),
  );
  // ...the merged map joins them with ",", as Envoy does.
  assertDeny(
    t,
    await envoy.check({ headers: { authorization: `Bearer ${GOOD},Bearer ${INACTIVE}` } }),
    invalidRequest('more than one credential in the Authorization header'),
  );
  assertDeny(
    t,
    await envoy.check({ headers: { authorization: `Basic dXNlcjpwYXNz,Bearer ${GOOD}` } }),
    invalidRequest('more than one credential in the Authorization header'),
  );
  t.equal(fake.requests.length, before, 'the endpoint was not asked');
});

t.test('a CheckRequest without attributes is a deny, never an error or an allow', async (t) => {
  for (const [name, request] of [
    ['empty CheckRequest', {}],
    ['empty attributes', { attributes: {} }],
    ['empty request', { attributes: { request: {} } }],
    ['empty http', { attributes: { request: { http: {} } } }],
    ['empty header_map', { attributes: { request: { http: { header_map: { headers: [] } } } } }],
  ] as Array<[string, object]>) {
    await t.test(name, async (t) => {
      let res: UpstreamCheckResponse | undefined;
      await t.resolves(
        envoy.checkRaw(request).then((r) => (res = r)),
        'the RPC succeeds',
      );
      if (res) assertDeny(t, res, MISSING);
    });
  }
});

t.test('bytes that are not a CheckRequest: a deny in an OK RPC, never a failed RPC', async (t) => {
  // A failed RPC is what Envoy's failure_mode_allow turns into an allow.
  const upstreamCheck = (
    grpc.loadPackageDefinition(upstreamDefinitions()) as unknown as {
      envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
    }
  ).envoy.service.auth.v3.Authorization.service.Check!;
  const identity = (bytes: Buffer) => bytes;
  const Raw = grpc.makeGenericClientConstructor(
    {
      Check: {
        path: upstreamCheck.path,
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    'Authorization',
  );
  const client = new Raw(`127.0.0.1:${app.grpc.port}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const send = (bytes: Buffer) =>
    new Promise<Buffer>((resolve, reject) =>
      (client as unknown as Record<string, Function>).Check!(bytes, { deadline: Date.now() + 2000 }, (error: Error | null, answer: Buffer) =>
        error ? reject(error) : resolve(answer),
      ),
    );
  const cases: Array<[string, Buffer]> = [
    ['a truncated length prefix', Buffer.from([0x0a, 0x80])],
    ['a length past the end', Buffer.from([0x0a, 0x10, 0x22, 0x02])],
    ['an invalid wire type', Buffer.from([0x0f, 0x01])],
    ['a nested length past its parent', Buffer.from([0x0a, 0x03, 0x22, 0x7f, 0x00])],
  ];
  for (const [name, bytes] of cases) {
    const answer = upstreamCheck.responseDeserialize(await send(bytes)) as UpstreamCheckResponse;
    t.equal(answer.status?.code, 13, `${name}: status INTERNAL`);
    t.equal(answer.denied_response?.status?.code, 'InternalServerError', `${name}: HTTP 500`);
    t.notOk(answer.ok_response, `${name}: no ok_response`);
  }
});

t.test('context_extensions select a named policy', async (t) => {
  const res = await envoy.check({
    headers: { authorization: `Bearer ${GOOD}`, 'x-partner-id': 'partner:evil', 'x-auth-subject': 'mallory', x_partner_id: 'x' },
    contextExtensions: { policy: 'partner' },
  });
  // The partner policy sets x-partner-id; x-auth-subject is in its prefix but not set, so it goes.
  assertAllow(t, res, { header: 'x-partner-id', identity: 'partner:app-one', removed: ['x-auth-subject', 'x_partner_id'] });

  const denied = await envoy.check({ headers: { authorization: `Bearer ${INACTIVE}` }, contextExtensions: { policy: 'partner' } });
  assertDeny(t, denied, {
    ...INVALID_TOKEN,
    challenge: 'Bearer realm="partners", error="invalid_token", error_description="the token is not active"',
  });
  const missing = await envoy.check({ headers: {}, contextExtensions: { policy: 'partner' } });
  assertDeny(t, missing, { ...MISSING, challenge: 'Bearer realm="partners"' });

  // Other extension keys do not select anything: the default policy applies.
  const other = await envoy.check({ headers: { authorization: `Bearer ${GOOD}` }, contextExtensions: { team: 'partner' } });
  assertAllow(t, other, { header: 'x-auth-subject', identity: 'alice', removed: [] });
  const explicit = await envoy.check({ headers: { authorization: `Bearer ${GOOD}` }, contextExtensions: { policy: 'default' } });
  assertAllow(t, explicit, { header: 'x-auth-subject', identity: 'alice', removed: [] });
});

t.test('context_extensions naming an unknown policy: deny 500, never the default policy', async (t) => {
  const before = fake.requests.length;
  const expected: ExpectDeny = {
    http: 'InternalServerError',
    rpc: grpc.status.INTERNAL,
    challenge: null,
    error: 'policy_error',
    description: 'the route is not configured correctly',
  };
  assertDeny(t, await envoy.check({ headers: { authorization: `Bearer ${GOOD}` }, contextExtensions: { policy: 'nope' } }), expected);
  assertDeny(t, await envoy.check({ rawHeaders: [['authorization', `Bearer ${GOOD}`]], contextExtensions: { policy: '' } }), expected);
  t.equal(fake.requests.length, before, 'the endpoint was not asked');
});

t.test('the same request through headers and through header_map gets the same answer', async (t) => {
  const cases: Array<{ name: string; headers: Array<[string, string]>; contextExtensions?: Record<string, string> }> = [
    { name: 'active with spoofs', headers: [['authorization', `Bearer ${GOOD}`], ...Object.entries(SPOOFED)] },
    { name: 'inactive', headers: [['authorization', `Bearer ${INACTIVE}`]] },
    { name: 'missing', headers: [['x-auth-roles', 'admin']] },
    { name: 'empty bearer', headers: [['authorization', 'Bearer']] },
    { name: 'bad characters', headers: [['authorization', 'Bearer abc"def']] },
    { name: 'partner', headers: [['authorization', `Bearer ${GOOD}`], ['x-partner-id', 'evil']], contextExtensions: { policy: 'partner' } },
    { name: 'unknown policy', headers: [['authorization', `Bearer ${GOOD}`]], contextExtensions: { policy: 'gone' } },
  ];
  for (const c of cases) {
    const viaHeaders = await envoy.check({ headers: Object.fromEntries(c.headers), contextExtensions: c.contextExtensions });
    const viaMap = await envoy.check({ rawHeaders: c.headers, contextExtensions: c.contextExtensions });
    t.same(viaMap, viaHeaders, `${c.name}: identical decoded CheckResponse`);
  }
  // And one pair is checked to be what it should be, so "identical" is not "identically broken".
  const allow = await envoy.check({ rawHeaders: cases[0]!.headers });
  t.equal(allow.status?.code, 0);
  const deny = await envoy.check({ rawHeaders: cases[1]!.headers });
  t.equal(deny.denied_response?.status?.code, 'Unauthorized');
});

t.test('policy answers through the upstream protos: attribute headers, pass-through, dynamic_metadata as Struct', async (t) => {
  const RICH = 'rich-token-A1b2C3';
  const rich = {
    sub: 'alice',
    client_id: 'app-one',
    scope: 'read write',
    exp: EXP,
    admin: false,
    ratio: 0.25,
    roles: ['reader', 'auditor'],
    aud: ['api', 'has space'],
    org: { id: 7, units: ['a', 'b'], parent: null },
    secret_internal: 'hidden',
  };
  const as = await startFakeAuthorizationServer(answerByToken({ [RICH]: rich }));
  t.teardown(() => as.close());
  const { envoy: e } = await startService(t, {
    endpoints: [{ name: 'main', url: as.url, clientId: 'authz-service', clientSecret: 's3cret' }],
    policies: [
      {
        name: 'default',
        attributes: ['-active', '-exp', '-*_internal'],
        exposeHeaders: true,
        attributesHeader: 'x-auth-attributes',
        hideCredentials: true,
      },
      { name: 'open', passThrough: true },
    ],
  });

  const res = await e.check({ headers: { authorization: `Bearer ${RICH}`, 'x-auth-roles': 'admin', x_auth_org: '{}', 'x-auth-status': 'x' } });
  t.equal(res.status?.code, 0);
  const headers = headerMap(t, res.ok_response!.headers);
  const kept = { sub: 'alice', client_id: 'app-one', scope: 'read write', admin: false, ratio: 0.25, roles: ['reader', 'auditor'], aud: ['api', 'has space'], org: { id: 7, units: ['a', 'b'], parent: null } };
  t.same(headers, {
    'x-auth-subject': 'alice',
    'x-auth-attributes': Buffer.from(JSON.stringify(kept)).toString('base64url'),
    'x-auth-sub': 'alice',
    'x-auth-client-id': 'app-one',
    'x-auth-scope': 'read write',
    'x-auth-admin': 'false',
    'x-auth-ratio': '0.25',
    'x-auth-roles': 'reader auditor',
    'x-auth-aud': '["api","has space"]',
    'x-auth-org': '{"id":7,"units":["a","b"],"parent":null}',
  });
  t.same([...res.ok_response!.headers_to_remove].sort(), ['authorization', 'x-auth-status', 'x_auth_org'], 'spoofs and the credential removed; our own headers overwritten');
  const metadata = structToJson(res.dynamic_metadata!.fields);
  t.same(metadata, { policy: 'default', status: 'authenticated', identity: 'alice', attributes: kept }, 'the Struct decodes to the kept attributes');
  t.equal(res.dynamic_metadata!.fields.attributes!.kind, 'structValue');
  t.equal(res.dynamic_metadata!.fields.attributes!.structValue!.fields.ratio!.kind, 'numberValue');
  t.equal(res.dynamic_metadata!.fields.attributes!.structValue!.fields.org!.structValue!.fields.parent!.kind, 'nullValue');

  const anonymous = await e.check({ headers: { 'x-auth-subject': 'mallory', 'x-auth-status': 'authenticated' }, contextExtensions: { policy: 'open' } });
  t.equal(anonymous.status?.code, 0, 'pass-through is an allow');
  t.same(headerMap(t, anonymous.ok_response!.headers), { 'x-auth-status': 'anonymous' });
  t.same(anonymous.ok_response!.headers_to_remove, ['x-auth-subject']);
  t.same(structToJson(anonymous.dynamic_metadata!.fields), { policy: 'open', status: 'anonymous' });
});

t.test('health: Check', async (t) => {
  t.equal(await envoy.health(''), 'SERVING', 'overall service');
  t.equal(await envoy.health('envoy.service.auth.v3.Authorization'), 'SERVING', 'Authorization service');
  await t.rejects(envoy.health('no.such.Service'), { code: grpc.status.NOT_FOUND }, 'unknown service: NOT_FOUND');
});

/** Resolve when `condition()` holds; reject after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

t.test('health: Watch gets SERVING, then NOT_SERVING as soon as stop begins', async (t) => {
  const { app } = await startService(t, {});
  const Health = healthClientConstructor();
  const health = new Health(`127.0.0.1:${app.grpc.port}`, grpc.credentials.createInsecure());
  t.teardown(() => health.close());

  type Watch = grpc.ClientReadableStream<{ status: string }>;
  const watch = (service: string) => {
    const seen: string[] = [];
    const errors: grpc.ServiceError[] = [];
    const call = (health as unknown as Record<string, (req: object) => Watch>).Watch!({ service });
    call.on('data', (message: { status: string }) => seen.push(message.status));
    call.on('error', (error: grpc.ServiceError) => errors.push(error));
    t.teardown(() => call.cancel());
    return { call, seen, errors };
  };
  const overall = watch('');
  const authz = watch('envoy.service.auth.v3.Authorization');
  const unknown = watch('no.such.Service');

  await waitFor(() => overall.seen.length >= 1 && authz.seen.length >= 1 && unknown.seen.length >= 1, 2_000, 'first statuses');
  t.same(overall.seen, ['SERVING']);
  t.same(authz.seen, ['SERVING']);
  t.same(unknown.seen, ['SERVICE_UNKNOWN'], 'an unknown service is SERVICE_UNKNOWN on Watch (not an error)');

  const stopping = app.stop();
  await waitFor(() => overall.seen.length >= 2 && authz.seen.length >= 2, 2_000, 'NOT_SERVING');
  t.same(overall.seen, ['SERVING', 'NOT_SERVING']);
  t.same(authz.seen, ['SERVING', 'NOT_SERVING']);
  overall.call.cancel();
  authz.call.cancel();
  unknown.call.cancel();
  const started = Date.now();
  await stopping;
  t.ok(Date.now() - started < 500, 'stop completes once the watchers are gone, well before shutdownTimeout');
});
