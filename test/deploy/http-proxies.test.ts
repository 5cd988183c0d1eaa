// The HTTP mode's documented configs for proxies the test machines do not
// run (Envoy http_service, Traefik ForwardAuth, ingress-nginx auth-url): each
// file is read, the sub-request its proxy sends is built from it and from
// that proxy's documented behaviour, and the service's own reader
// (src/http/request.ts) must take it, with the policy the file names; the
// headers each file copies upstream are the ones the policies set.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { readSubRequest } from '../../src/http/request.js';
import { renderHttpAnswer } from '../../src/http/response.js';
import { DEPLOY } from './lib/files.js';
import { envoyReader } from './lib/envoy-protos.js';

/** The identity header of the policies the shipped proxy configs name (the default identityHeader). */
const IDENTITY = 'x-auth-subject';
const yaml = (path: string) => YAML.parse(readFileSync(join(DEPLOY, path), 'utf8')) as any;
const flat = (headers: Record<string, string>) => Object.entries(headers).flat();

t.test('Envoy http_service (deploy/envoy/envoy-http.yaml)', async (t) => {
  const file = yaml('envoy/envoy-http.yaml');
  const { reader, bootstrap } = envoyReader();
  t.same(reader.read(bootstrap, file, 'envoy-http.yaml').problems, [], 'a Bootstrap with no unknown field');
  const hcm = file.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const authz = hcm.http_filters[0].typed_config;
  const service = authz.http_service;
  t.equal(authz.failure_mode_allow, false, 'fails closed');
  t.ok(hcm.normalize_path && hcm.merge_slashes, 'the path the rules judge is the one routed');
  t.equal(hcm.common_http_protocol_options.headers_with_underscores_action, 'REJECT_REQUEST');
  t.same(service.authorization_response.allowed_upstream_headers.patterns, [{ exact: IDENTITY }], 'the identity header goes upstream');
  const toClient = service.authorization_response.allowed_client_headers.patterns.map((p: any) => p.exact);
  t.ok(toClient.includes('www-authenticate'), 'the challenge reaches the client');
  const sent = authz.allowed_headers.patterns;
  t.ok(sent.some((p: any) => p.exact === 'authorization'), 'the token is sent');
  t.ok(sent.some((p: any) => p.prefix === 'x-auth-'), 'client copies under the prefix are sent, to be listed for removal');
  const cluster = file.static_resources.clusters.find((c: any) => c.name === service.server_uri.cluster);
  t.equal(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, 9002, 'server.http.port');
  t.equal(cluster.health_checks[0].http_health_check.path, '/healthz');

  // Envoy: path = path_prefix + original path, the original method and Host.
  const sub = readSubRequest('POST', `${service.path_prefix}/orders/7?x=1`, flat({ host: 'shop.example.com', authorization: 'Bearer t' }));
  t.ok(sub.ok, 'taken');
  if (sub.ok) {
    t.equal(sub.contract, 'envoy');
    t.equal(sub.request.policy, undefined, '/envoy/-: the rules choose');
    t.same([sub.request.method, sub.request.host, sub.request.path], ['POST', 'shop.example.com', '/orders/7?x=1']);
  }
  // What Envoy reads of an allow: the set header and the removals.
  const answer = renderHttpAnswer({
    allow: true, reason: 'ok', policy: 'p', identity: 'alice', headers: [{ name: IDENTITY, value: 'alice' }],
    removeHeaders: ['x-auth-role'], metadata: {}, endpoint: null, cache: 'hit',
  });
  t.same(answer.headers.find(([name]) => name === 'x-envoy-auth-headers-to-remove'), ['x-envoy-auth-headers-to-remove', 'x-auth-role']);
});

t.test('Traefik ForwardAuth (deploy/traefik/dynamic.yaml)', async (t) => {
  const file = yaml('traefik/dynamic.yaml');
  const middlewares = file.http.middlewares;
  const forwardAuths = Object.entries(middlewares).filter(([, m]: [string, any]) => m.forwardAuth);
  t.equal(forwardAuths.length, 2);
  for (const [name, middleware] of forwardAuths as Array<[string, any]>) {
    const auth = middleware.forwardAuth;
    t.equal(auth.trustForwardHeader, false, `${name}: Traefik overwrites X-Forwarded-*`);
    t.ok(new RegExp(auth.authResponseHeadersRegex, 'i').test(IDENTITY), `${name}: copies (and first strips) the identity header`);
    t.notOk(new RegExp(auth.authResponseHeadersRegex, 'i').test('x-authz-status'), `${name}: not our status header`);
    const url = new URL(auth.address);
    t.equal(url.port, '9002');
    // Traefik: GET to the address, the client's headers, X-Forwarded-Method/-Proto/-Host/-Uri.
    const sub = readSubRequest('GET', url.pathname, flat({
      host: url.host, authorization: 'Bearer t', 'x-forwarded-method': 'PUT', 'x-forwarded-proto': 'https',
      'x-forwarded-host': 'shop.example.com', 'x-forwarded-uri': '/admin/x?y=1',
    }));
    t.ok(sub.ok, `${name}: taken`);
    if (sub.ok) {
      t.equal(sub.contract, 'forward');
      t.equal(sub.request.policy, name.replace('authz-', ''), `${name}: the policy the middleware names`);
      t.same([sub.request.method, sub.request.host, sub.request.path], ['PUT', 'shop.example.com', '/admin/x?y=1']);
    }
  }
  const defaultRouter = file.http.routers.default;
  t.same(defaultRouter.middlewares, ['authz-default', 'authz-hide-credentials'], 'the credential is dropped after the check, not before');
  t.same(middlewares['authz-hide-credentials'].headers.customRequestHeaders, { Authorization: '' });
});

t.test('ingress-nginx auth-url (deploy/ingress-nginx/ingress.yaml)', async (t) => {
  const ingress = yaml('ingress-nginx/ingress.yaml');
  const annotations = ingress.metadata.annotations;
  const url = new URL(annotations['nginx.ingress.kubernetes.io/auth-url']);
  t.equal(url.port, '9002');
  t.equal(annotations['nginx.ingress.kubernetes.io/auth-method'], 'GET');
  t.notOk('nginx.ingress.kubernetes.io/auth-cache-key' in annotations, 'no answer reused across tokens');
  const copied = annotations['nginx.ingress.kubernetes.io/auth-response-headers'].split(',').map((h: string) => h.trim().toLowerCase());
  t.ok(copied.includes(IDENTITY), 'the identity header is copied (and so overwritten) upstream');
  // The controller's auth location: Host = the auth-url's host, X-Original-URL and X-Original-Method set, client headers passed.
  const sub = readSubRequest('GET', url.pathname, flat({
    host: url.hostname, authorization: 'Bearer t', 'x-original-url': 'https://shop.example.com:443/orders?a=1',
    'x-original-method': 'DELETE', 'x-sent-from': 'nginx-ingress-controller', 'x-auth-request-redirect': '/orders?a=1',
  }));
  t.ok(sub.ok, 'taken');
  if (sub.ok) {
    t.equal(sub.contract, 'nginx');
    t.equal(sub.request.policy, 'default');
    t.same([sub.request.method, sub.request.host, sub.request.path], ['DELETE', 'shop.example.com:443', '/orders?a=1']);
  }
});

t.test('a proxy config that forgets the original-request headers is refused, never guessed at', async (t) => {
  t.notOk(readSubRequest('GET', '/nginx/default', flat({ host: 'a', 'x-original-uri': '/orders' })).ok, 'X-Original-URI alone (not the contract)');
  t.notOk(readSubRequest('GET', '/forward/default', flat({ host: 'a', 'x-forwarded-uri': '/x' })).ok, 'X-Forwarded-Uri without method and host');
});
