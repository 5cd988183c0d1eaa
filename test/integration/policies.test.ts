/**
 * End to end, policies: Envoy (a gRPC client built from the upstream protos)
 * -> this service -> a real authorization server (oidc-provider). Its
 * client_credentials tokens carry client_id, scope, exp, iat, iss and
 * token_type, and no sub.
 */
import t from 'tap';
import { startApp } from '../../src/app.js';
import { buildConfig, ConfigError } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startAuthorizationServer, type AuthorizationServer } from '../support/authorization-server.js';
import { connectEnvoy, structToJson, summarize, type CheckOptions, type UpstreamCheckResponse } from '../support/envoy.js';

type Raw = Record<string, unknown>;

const as: AuthorizationServer = await startAuthorizationServer();
t.teardown(() => as.close());

const endpoints: Raw[] = [
  {
    name: 'oidc',
    url: as.introspectionUrl,
    authMethod: 'client_secret_basic',
    clientId: as.introspectors.basic.clientId,
    clientSecret: as.introspectors.basic.clientSecret,
  },
  {
    name: 'partners',
    url: as.introspectionUrl,
    authMethod: 'client_secret_post',
    clientId: as.introspectors.post.clientId,
    clientSecret: as.introspectors.post.clientSecret,
    restricted: true,
  },
];

const policies: Raw[] = [
  { name: 'default', endpoint: 'oidc' },
  { name: 'orders', endpoint: 'oidc', scopes: 'read', match: [{ host: 'api.example.com', pathPrefix: '/orders' }] },
  {
    name: 'orders-admin',
    endpoint: 'oidc',
    realm: 'orders',
    scopes: 'admin write',
    match: [{ host: 'api.example.com', pathPrefix: '/orders/admin' }],
  },
  {
    name: 'reports',
    endpoint: 'oidc',
    scopes: 'admin audit',
    scopeValidationCriteria: 'OR',
    match: [{ host: '*.example.com', pathPrefix: '/reports' }],
  },
  // MuleSoft style: only listed clients, claims exposed as headers, the token kept from the upstream.
  {
    name: 'partner-api',
    endpoint: 'partners',
    realm: 'partners',
    skipClientIdValidation: false,
    allowedClients: ['app-two'],
    exposeHeaders: true,
    attributes: ['+client_id', '+scope', '-*'],
    hideCredentials: true,
  },
  // IBM style: an identity template, attribute rules, everything kept in one header.
  {
    name: 'ibm',
    endpoint: 'oidc',
    mappedIdentity: '{iss}/{client_id}',
    attributes: ['+scope', '+client_id', '-exp', '-iat', '-active', '+*'],
    attributesHeader: 'x-auth-attributes',
  },
  // Express Gateway style: anonymous callers welcome.
  { name: 'public', endpoint: 'oidc', passThrough: true, match: [{ pathPrefix: '/public' }] },
];

const config = buildConfig(
  {
    server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 1000 },
    log: { level: 'silent' },
    cache: { validatedTokenTTL: 60 },
    endpoints,
    policies,
    defaultPolicy: 'default',
  },
  'policies test',
  { env: {} },
);
const app = await startApp(config, createLogger('silent'));
t.teardown(() => app.stop());
const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
t.teardown(() => envoy.close());

const tokens = {
  read: await as.issueToken({ scope: 'read' }),
  readTwo: await as.issueToken({ scope: 'read', clientId: 'app-two' }),
  adminWrite: await as.issueToken({ scope: 'admin write' }),
  write: await as.issueToken({ scope: 'write' }),
  admin: await as.issueToken({ scope: 'admin' }),
};

function check(token: string | null, options: CheckOptions = {}): Promise<UpstreamCheckResponse> {
  const authorization: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  return envoy.check({ ...options, headers: { ...authorization, ...options.headers } });
}

function metadata(response: UpstreamCheckResponse): Record<string, unknown> {
  return structToJson(response.dynamic_metadata?.fields ?? {});
}

function body(response: UpstreamCheckResponse): unknown {
  return JSON.parse(response.denied_response?.body ?? 'null');
}

t.test('a restricted endpoint is refused, at load, to a policy that does not name it', async (t) => {
  const attempt = (policy: Raw) => () =>
    buildConfig({ endpoints: [endpoints[1]], policies: [policy] }, 'restricted', { env: {} });
  t.throws(attempt({ name: 'sneaky' }), ConfigError);
  t.throws(attempt({ name: 'sneaky' }), { message: /^restricted: policies\[0\]\.endpoint: required when .* the only one is restricted$/ });
  t.doesNotThrow(attempt({ name: 'named', endpoint: 'partners' }), 'naming it is the way in');
});

t.test('per-route policy through context_extensions: client enforcement, exposed headers, hidden credentials', async (t) => {
  const allowed = await check(tokens.readTwo, {
    contextExtensions: { policy: 'partner-api' },
    headers: { 'x-auth-client-id': 'forged', x_auth_scope: 'admin', 'x-auth-subject': 'mallory', 'x-auth-roles': 'admin' },
  });
  const r = summarize(allowed);
  t.equal(r.allowed, true);
  t.same(r.headers, { 'x-auth-subject': 'app-two', 'x-auth-client-id': 'app-two', 'x-auth-scope': 'read' });
  t.same(r.headersToRemove.sort(), ['authorization', 'x-auth-roles', 'x_auth_scope'], 'spoofs gone, the token hidden from the upstream');
  t.same(metadata(allowed), {
    policy: 'partner-api',
    status: 'authenticated',
    identity: 'app-two',
    attributes: { client_id: 'app-two', scope: 'read' },
  });

  const refused = await check(tokens.read, { contextExtensions: { policy: 'partner-api' } });
  const d = summarize(refused);
  t.equal(d.allowed, false);
  t.equal(d.httpStatus, 403);
  t.equal(refused.status?.message, 'client_not_allowed');
  t.equal(d.headers['www-authenticate'], undefined, 'a plain 403, no insufficient_scope challenge');
  t.same(body(refused), { error: 'client_not_allowed', error_description: 'the client is not allowed to use this resource' });
});

t.test('Istio style: host and path select the policy (no context_extensions); scopes AND and OR', async (t) => {
  const cases: Array<[string, string, string, number | 'allow', string]> = [
    ['read on /orders', 'api.example.com', '/orders/42?expand=items', 'allow', 'orders'],
    ['write lacks read', 'api.example.com:443', '/orders/42', 403, 'orders'],
    ['read lacks admin write (AND)', 'api.example.com', '/orders/admin/purge', 403, 'orders-admin'],
    ['admin write (AND)', 'API.example.com', '/orders/admin/purge', 'allow', 'orders-admin'],
    ['admin alone lacks write (AND)', 'api.example.com', '/orders/admin', 403, 'orders-admin'],
    ['admin (OR)', 'shop.example.com', '/reports/2026', 'allow', 'reports'],
    ['write (OR) has neither', 'shop.example.com', '/reports', 403, 'reports'],
    ['no rule: the default policy', 'other.example.org', '/orders/1', 'allow', 'default'],
  ];
  const tokenFor: Record<string, string> = {
    'read on /orders': tokens.read,
    'write lacks read': tokens.write,
    'read lacks admin write (AND)': tokens.read,
    'admin write (AND)': tokens.adminWrite,
    'admin alone lacks write (AND)': tokens.admin,
    'admin (OR)': tokens.admin,
    'write (OR) has neither': tokens.write,
    'no rule: the default policy': tokens.write,
  };
  for (const [name, host, path, want, policy] of cases) {
    const response = await check(tokenFor[name]!, { host, path });
    const r = summarize(response);
    if (want === 'allow') {
      t.equal(r.allowed, true, `${name}: allowed`);
      t.equal(metadata(response).policy, policy, `${name}: policy ${policy}`);
    } else {
      t.equal(r.httpStatus, want, `${name}: ${want}`);
      t.equal(response.status?.message, 'insufficient_scope', `${name}: reason`);
    }
  }

  const and = summarize(await check(tokens.read, { host: 'api.example.com', path: '/orders/admin/x' }));
  t.equal(
    and.headers['www-authenticate'],
    'Bearer realm="orders", error="insufficient_scope", error_description="the token lacks a scope this resource requires", scope="admin write"',
  );
  const or = await check(tokens.write, { host: 'shop.example.com', path: '/reports' });
  t.equal(
    summarize(or).headers['www-authenticate'],
    'Bearer realm="api", error="insufficient_scope", error_description="the token has none of the scopes this resource accepts", scope="admin audit"',
  );
  t.same(body(or), { error: 'insufficient_scope', error_description: 'the token has none of the scopes this resource accepts' });

  const before = as.introspectionCount();
  const sneaky = await check(tokens.read, { host: 'api.example.com', path: '/orders/x/..%2Fadmin/purge' });
  t.equal(summarize(sneaky).httpStatus, 400, 'a path not in normal form is refused where a prefix decides');
  t.same(body(sneaky), { error: 'invalid_request', error_description: 'the request path is not in normal form' });
  t.equal(as.introspectionCount(), before, 'and nothing is introspected');
});

t.test('IBM style: identity template, attribute rules, one attributes header', async (t) => {
  const response = await check(tokens.read, { contextExtensions: { policy: 'ibm' }, headers: { 'x-auth-attributes': 'e30' } });
  const r = summarize(response);
  t.equal(r.allowed, true);
  t.equal(r.headers['x-auth-subject'], `${as.issuer}/app-one`);
  const attributes = JSON.parse(Buffer.from(r.headers['x-auth-attributes']!, 'base64url').toString('utf8')) as Record<string, unknown>;
  t.same(Object.keys(attributes).sort(), ['client_id', 'iss', 'scope', 'token_type'], 'exp, iat and active dropped; the rest kept');
  t.same(attributes, { client_id: 'app-one', scope: 'read', iss: as.issuer, token_type: 'Bearer' });
  t.same(r.headersToRemove, [], 'the client copy is overwritten (ours is set)');
  t.same(metadata(response).attributes, attributes, 'the same attributes in dynamic_metadata');
});

t.test('Express Gateway style: passThrough lets callers without a usable token in as anonymous', async (t) => {
  const spoofs = { 'x-auth-subject': 'mallory', 'x-auth-status': 'authenticated' };
  const revoked = await as.issueToken({ scope: 'read' });
  await as.revoke(revoked);
  for (const [name, token] of [
    ['no token', null],
    ['revoked token', revoked],
    ['garbage token', 'not-a-real-token'],
  ] as Array<[string, string | null]>) {
    const response = await check(token, { path: '/public/news', headers: spoofs });
    const r = summarize(response);
    t.equal(r.allowed, true, `${name}: allowed`);
    t.same(r.headers, { 'x-auth-status': 'anonymous' }, `${name}: only the marker`);
    t.same(
      r.headersToRemove,
      token === null ? ['x-auth-subject'] : ['x-auth-subject', 'authorization'],
      `${name}: the spoofed identity is removed, and the unverified credential`,
    );
    t.same(metadata(response), { policy: 'public', status: 'anonymous' }, `${name}: metadata`);
  }
  const known = summarize(await check(tokens.read, { path: '/public/news', headers: spoofs }));
  t.equal(known.headers['x-auth-subject'], 'app-one', 'a valid token is still authenticated');
  t.same(known.headersToRemove, ['x-auth-status'], 'and a client-sent marker never survives');

  const elsewhere = summarize(await check(null, { path: '/private' }));
  t.equal(elsewhere.httpStatus, 401, 'other routes still need a token');
});

t.test('the default policy: identity, spoofs removed, kept attributes in dynamic_metadata', async (t) => {
  const response = await check(tokens.read, { headers: { 'x-auth-subject': 'mallory', x_auth_subject: 'm', 'x-auth-admin': 'true' } });
  const r = summarize(response);
  t.same(r.headers, { 'x-auth-subject': 'app-one' });
  t.same(r.headersToRemove.sort(), ['x-auth-admin', 'x_auth_subject']);
  const meta = metadata(response);
  t.equal(meta.identity, 'app-one');
  const attributes = meta.attributes as Record<string, unknown>;
  t.match(attributes, { active: true, client_id: 'app-one', scope: 'read', iss: as.issuer, token_type: 'Bearer' });
  t.type(attributes.exp, 'number', 'numbers stay numbers');
});
