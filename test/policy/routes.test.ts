import t from 'tap';
import {
  compileHost,
  compilePathPrefix,
  compileRoutes,
  isNormalPath,
  matchRoute,
  normalizeHost,
  sameRoute,
  type RouteRule,
} from '../../src/policy/routes.js';

function rule(policy: string, host?: string, pathPrefix?: string): RouteRule & { policy: string } {
  const h = host === undefined ? null : compileHost(host);
  return { policy, host: h?.host ?? null, wildcard: h?.wildcard ?? false, pathPrefix: pathPrefix === undefined ? null : compilePathPrefix(pathPrefix) };
}

function pick(table: ReturnType<typeof compileRoutes>, host: string, path: string): string {
  const match = matchRoute(table, host, path);
  return match.kind === 'policy' ? match.policy : match.kind;
}

t.test('compileHost', async (t) => {
  const good: Array<[string, string, boolean]> = [
    ['api.example.com', 'api.example.com', false],
    ['API.Example.COM', 'api.example.com', false],
    ['api.example.com.', 'api.example.com', false],
    ['*.example.com', '.example.com', true],
    ['*.Example.com', '.example.com', true],
    ['localhost', 'localhost', false],
    ['orders.default.svc.cluster.local', 'orders.default.svc.cluster.local', false],
    ['10.0.0.1', '10.0.0.1', false],
    ['[::1]', '[::1]', false],
    ['[2001:DB8::1]', '[2001:db8::1]', false],
    ['under_score.internal', 'under_score.internal', false],
  ];
  for (const [text, host, wildcard] of good) t.same(compileHost(text), { host, wildcard }, text);
  const bad: Array<[string, RegExp]> = [
    ['api.example.com:443', /must not include a port/],
    ['api.example.com:', /must not include a port/],
    ['', /must be a host name/],
    ['*', /must be a host name/],
    ['*example.com', /must be a host name/],
    ['api.*.com', /must be a host name/],
    ['*.*.example.com', /must be a host name/],
    ['a..b', /must be a host name/],
    ['-a.example.com', /must be a host name/],
    ['api example.com', /must be a host name/],
    ['https://api.example.com', /must/],
    [`${'a'.repeat(250)}.com`, /must be a host name/],
  ];
  for (const [text, message] of bad) t.throws(() => compileHost(text), { name: 'TypeError', message }, JSON.stringify(text));
});

t.test('compilePathPrefix', async (t) => {
  const good: Array<[string, string | null]> = [
    ['/', null],
    ['/orders', '/orders'],
    ['/orders/', '/orders'],
    ['/api/v1/orders/', '/api/v1/orders'],
    ['/a%20b', '/a%20b'],
    ['/a:b@c', '/a:b@c'],
  ];
  for (const [text, want] of good) t.equal(compilePathPrefix(text), want, text);
  const bad: Array<[string, RegExp]> = [
    ['', /must start with "\/"/],
    ['orders', /must start with "\/"/],
    ['/orders?x=1', /literal path prefix/],
    ['/orders/*', /literal path prefix/],
    ['/orders#x', /literal path prefix/],
    ['//orders', /normal form/],
    ['/a/../b', /normal form/],
    ['/a/./b', /normal form/],
    ['/a%2fb', /normal form/],
    ['/a%41', /normal form/],
    ['/a\\b', /normal form/],
    ['/a;b', /normal form/],
    ['/Zoë', /normal form/],
  ];
  for (const [text, message] of bad) t.throws(() => compilePathPrefix(text), { name: 'TypeError', message }, JSON.stringify(text));
});

t.test('isNormalPath', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['/', true],
    ['/orders/42', true],
    ['/orders/42/', true],
    ['/a.b/c.d', true],
    ['/.well-known/x', true],
    ['/a/.hidden', true],
    ['/a%20b', true],
    ['/a%3Ab%3a', true],
    ['/a%40b', true],
    ['/a~b-c_d', true],
    ['', false],
    ['orders', false],
    ['*', false],
    ['http://h/x', false],
    ['//orders', false],
    ['/orders//42', false],
    ['/orders/', true],
    ['/a/../b', false],
    ['/a/..', false],
    ['/..', false],
    ['/a..b', false],
    ['/public/..;/admin', false],
    ['/a/./b', false],
    ['/a/.', false],
    ['/.', false],
    ['/a\\b', false],
    ['/a;jsessionid=1', false],
    ['/a#b', false],
    ['/a b', false],
    ['/a\tb', false],
    ['/a\u0000', false],
    ['/a\u007f', false],
    ['/Zoë', false],
    ['/a%2fb', false],
    ['/a%2Fb', false],
    ['/a%2eb', false],
    ['/a%2E%2E/b', false],
    ['/a%5cb', false],
    ['/a%5Cb', false],
    ['/a%25', false],
    ['/a%252f', false],
    ['/a%3b', false],
    ['/ord%65rs', false],
    ['/a%41', false],
    ['/a%7e', false],
    ['/a%00', false],
    ['/a%0a', false],
    ['/a%7f', false],
    ['/a%c3%a9', false],
    ['/a%', false],
    ['/a%2', false],
    ['/a%zz', false],
    ['/a%g0', false],
  ];
  for (const [path, want] of cases) t.equal(isNormalPath(path, path.length), want, JSON.stringify(path));
  t.equal(isNormalPath('/a?b=../x//y', 2), true, 'only the part before `end` is read');
});

t.test('normalizeHost', async (t) => {
  const cases: Array<[string, string]> = [
    ['api.example.com', 'api.example.com'],
    ['API.Example.com', 'api.example.com'],
    ['api.example.com:8443', 'api.example.com'],
    ['api.example.com.', 'api.example.com'],
    ['API.example.com.:443', 'api.example.com'],
    ['[::1]:8080', '[::1]'],
    ['[::1]', '[::1]'],
    ['[::1', '[::1'],
    ['', ''],
  ];
  for (const [raw, want] of cases) t.equal(normalizeHost(raw), want, JSON.stringify(raw));
  const same = 'api.example.com';
  t.equal(normalizeHost(same), same, 'an already normal host is returned as is');
});

t.test('precedence: exact host > wildcard (longer suffix first) > any host; then longest prefix', async (t) => {
  const table = compileRoutes([
    rule('any-host-root'),
    rule('any-host-admin', undefined, '/admin'),
    rule('wild', '*.example.com'),
    rule('wild-orders', '*.example.com', '/orders/'),
    rule('wild-api', '*.api.example.com'),
    rule('exact', 'api.example.com'),
    rule('exact-orders', 'api.example.com', '/orders'),
    rule('exact-orders-archive', 'api.example.com', '/orders/archive'),
  ]);
  const cases: Array<[string, string, string]> = [
    ['api.example.com', '/orders/42', 'exact-orders'],
    ['api.example.com', '/orders', 'exact-orders'],
    ['api.example.com', '/orders/', 'exact-orders'],
    ['api.example.com', '/orders?page=2', 'exact-orders'],
    ['api.example.com', '/orders/archive/7', 'exact-orders-archive'],
    ['api.example.com', '/orders/archived', 'exact-orders'],
    ['api.example.com', '/orders-archive', 'exact'],
    ['api.example.com', '/admin', 'exact'],
    ['API.EXAMPLE.COM:443', '/orders/1', 'exact-orders'],
    ['api.example.com.', '/orders/1', 'exact-orders'],
    ['shop.example.com', '/orders/1', 'wild-orders'],
    ['shop.example.com', '/cart', 'wild'],
    ['a.b.example.com', '/cart', 'wild'],
    ['v2.api.example.com', '/orders/1', 'wild-api'],
    ['example.com', '/orders/1', 'any-host-root'],
    ['example.com', '/admin/x', 'any-host-admin'],
    ['other.org', '/admin', 'any-host-admin'],
    ['other.org', '/administrator', 'any-host-root'],
    ['', '/', 'any-host-root'],
  ];
  for (const [host, path, want] of cases) t.equal(pick(table, host, path), want, `${host} ${path}`);
});

t.test('no rule matches: none (the default policy applies)', async (t) => {
  const table = compileRoutes([rule('orders', 'api.example.com', '/orders')]);
  t.equal(pick(table, 'api.example.com', '/cart'), 'none');
  t.equal(pick(table, 'other.example.com', '/orders/1'), 'none');
  t.equal(pick(table, 'notapi.example.com', '/orders'), 'none');
  t.equal(pick(compileRoutes([]), 'api.example.com', '//x/../y'), 'none', 'no rules: the path never matters');
});

t.test('a path not in normal form is refused only when a prefix would decide', async (t) => {
  const table = compileRoutes([
    rule('admin', 'api.example.com', '/admin'),
    rule('api', 'api.example.com'),
    rule('public', 'public.example.com'),
    rule('shop-cart', 'shop.example.com', '/cart'),
  ]);
  t.equal(pick(table, 'api.example.com', '/public/../admin/users'), 'abnormal_path');
  t.equal(pick(table, 'api.example.com', '/public/..;/admin'), 'abnormal_path');
  t.equal(pick(table, 'api.example.com', '/%61dmin'), 'abnormal_path');
  t.equal(pick(table, 'api.example.com', '//admin'), 'abnormal_path');
  t.equal(pick(table, 'api.example.com', '/x%2F..%2Fadmin'), 'abnormal_path');
  t.equal(pick(table, 'api.example.com', '/admin/ok?next=/../x'), 'admin', 'the query string is not part of the path');
  t.equal(pick(table, 'public.example.com', '/a/../b'), 'public', 'host-only rule: the path does not decide');
  t.equal(pick(table, 'elsewhere.org', '/a/../b'), 'none', 'no rule for the host: the path does not decide');
  t.equal(pick(table, 'shop.example.com', '/a/../cart'), 'abnormal_path', 'a prefix rule for the host decides');
});

t.test('sameRoute and the compiled table', async (t) => {
  t.ok(sameRoute(rule('a', 'x.com', '/a/'), rule('b', 'X.com', '/a')));
  t.notOk(sameRoute(rule('a', 'x.com', '/a'), rule('b', 'x.com', '/b')));
  t.notOk(sameRoute(rule('a', '*.x.com'), rule('b', 'x.com')));
  t.notOk(sameRoute(rule('a'), rule('b', 'x.com')));
  const table = compileRoutes([rule('a', undefined, '/x'), rule('b', 'h.com')]);
  t.ok(Object.isFrozen(table.rules));
  t.same(table.rules.map((r) => r.policy), ['b', 'a']);
  const first = matchRoute(table, 'h.com', '/');
  t.equal(matchRoute(table, 'h.com', '/y'), first, 'a match is a shared constant, not a fresh object');
});
