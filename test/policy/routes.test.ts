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

interface Options {
  separated?: boolean;
  ignoreCase?: boolean;
}

function rule(policy: string, host?: string, pathPrefix?: string, { separated = false, ignoreCase = false }: Options = {}): RouteRule & { policy: string } {
  const h = host === undefined ? null : compileHost(host);
  const prefix = pathPrefix === undefined ? null : compilePathPrefix(pathPrefix, separated, ignoreCase);
  return { policy, host: h?.host ?? null, wildcard: h?.wildcard ?? false, pathPrefix: prefix, separated: prefix !== null && separated, ignoreCase: prefix !== null && ignoreCase };
}

/** A segment rule (pathSeparatedPrefix). */
function seg(policy: string, host: string | undefined, pathPrefix: string): RouteRule & { policy: string } {
  return rule(policy, host, pathPrefix, { separated: true });
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
  const good: Array<[string, string | null, string | null]> = [
    ['/', null, null],
    ['/orders', '/orders', '/orders'],
    ['/orders/', '/orders/', '/orders'],
    ['/api/v1/orders/', '/api/v1/orders/', '/api/v1/orders'],
    ['/a%20b', '/a%20b', '/a%20b'],
    ['/a:b@c', '/a:b@c', '/a:b@c'],
  ];
  for (const [text, characters, segments] of good) {
    t.equal(compilePathPrefix(text), characters, `${text} (characters)`);
    t.equal(compilePathPrefix(text, true), segments, `${text} (segments)`);
  }
  t.equal(compilePathPrefix('/Admin/', false, true), '/admin/', 'ignoreCase: kept in lower case');
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
    ['[2001:DB8::1]:443', '[2001:db8::1]'],
    ['under_score.internal', 'under_score.internal'],
  ];
  for (const [raw, want] of cases) t.equal(normalizeHost(raw), want, JSON.stringify(raw));
  const invalid = [
    '',
    '[::1',
    '[::1]x',
    '[::1]:',
    'api.example.com:1@evil',
    'api.example.com:443:1',
    'api.example.com:',
    'api.example.com:https',
    'api.example.com:123456',
    'user@api.example.com',
    'api.example.com/x',
    'api.example.com?x',
    'api.example.com#x',
    'api example.com',
    'api.example.com%2F',
    'a..b',
    '-a.example.com',
    'api.example.com\\evil',
    'zoë.example.com',
    `${'a'.repeat(250)}.com`,
  ];
  for (const raw of invalid) t.equal(normalizeHost(raw), null, `${JSON.stringify(raw)} is not a valid host[:port]`);
  const same = 'api.example.com';
  t.equal(normalizeHost(same), same, 'an already normal host is returned as is');
});

t.test('precedence: exact host > wildcard (longer suffix first) > any host; then longest prefix', async (t) => {
  // Segment rules for the host rules, a character rule (/admin) for any host.
  const table = compileRoutes([
    rule('any-host-root'),
    rule('any-host-admin', undefined, '/admin'),
    rule('wild', '*.example.com'),
    seg('wild-orders', '*.example.com', '/orders/'),
    rule('wild-api', '*.api.example.com'),
    rule('exact', 'api.example.com'),
    seg('exact-orders', 'api.example.com', '/orders'),
    seg('exact-orders-archive', 'api.example.com', '/orders/archive'),
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
    ['other.org', '/administrator', 'any-host-admin'],
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
  t.ok(sameRoute(seg('a', 'x.com', '/a/'), seg('b', 'X.com', '/a')));
  t.notOk(sameRoute(rule('a', 'x.com', '/a/'), rule('b', 'X.com', '/a')), 'a character prefix keeps its trailing "/"');
  t.notOk(sameRoute(rule('a', 'x.com', '/a'), seg('b', 'x.com', '/a')));
  t.notOk(sameRoute(rule('a', 'x.com', '/a'), rule('b', 'x.com', '/a', { ignoreCase: true })));
  t.ok(sameRoute(rule('a', 'x.com', '/A', { ignoreCase: true }), rule('b', 'x.com', '/a', { ignoreCase: true })));
  t.notOk(sameRoute(rule('a', 'x.com', '/a'), rule('b', 'x.com', '/b')));
  t.notOk(sameRoute(rule('a', '*.x.com'), rule('b', 'x.com')));
  t.notOk(sameRoute(rule('a'), rule('b', 'x.com')));
  const table = compileRoutes([rule('a', undefined, '/x'), rule('b', 'h.com')]);
  t.ok(Object.isFrozen(table.rules));
  t.same(table.rules.map((r) => r.policy), ['b', 'a']);
  const first = matchRoute(table, 'h.com', '/');
  t.equal(matchRoute(table, 'h.com', '/y'), first, 'a match is a shared constant, not a fresh object');
});

t.test('pathPrefix matches characters, as Envoy\'s route prefix does: never narrower than the route', async (t) => {
  const table = compileRoutes([rule('admin', undefined, '/admin'), rule('api', 'api.example.com', '/api')]);
  // Envoy's `prefix: /admin` sends every one of these to the admin backend (Rails format
  // suffixes, Spring suffix matching): the policy must take them in too.
  for (const path of ['/admin', '/admin/', '/admin/users', '/admin.json', '/admin.', '/admin%20', '/admin%20/users', '/admin:x', '/admin~', '/admin-x', '/admin?x=1']) {
    t.equal(pick(table, 'other.org', path), 'admin', path);
  }
  t.equal(pick(table, 'api.example.com', '/api.json'), 'api');
  t.equal(pick(table, 'other.org', '/ADMIN'), 'none', 'case-sensitive by default, as Envoy is');
  t.equal(pick(table, 'other.org', '/adm'), 'none');
  t.equal(pick(table, 'other.org', '/x/admin'), 'none');
});

t.test('pathSeparatedPrefix matches whole segments, as Envoy\'s path_separated_prefix does', async (t) => {
  const table = compileRoutes([seg('orders', undefined, '/orders')]);
  for (const path of ['/orders', '/orders/', '/orders/42', '/orders?x=1']) t.equal(pick(table, 'h', path), 'orders', path);
  for (const path of ['/orders-archive', '/orders.json', '/ordersx']) t.equal(pick(table, 'h', path), 'none', path);
});

t.test('ignoreCase compares the path without case', async (t) => {
  const table = compileRoutes([rule('admin', undefined, '/Admin', { ignoreCase: true }), rule('users', undefined, '/users', { separated: true, ignoreCase: true })]);
  for (const path of ['/admin', '/ADMIN', '/Admin/users', '/aDmIn.json']) t.equal(pick(table, 'h', path), 'admin', path);
  t.equal(pick(table, 'h', '/%41dmin'), 'abnormal_path', 'an escaped letter is still not normal form');
  t.equal(pick(table, 'h', '/adm'), 'none');
});

t.test('at equal length a segment rule, then a case-sensitive one, is tried first', async (t) => {
  const table = compileRoutes([
    rule('chars-any-case', undefined, '/a', { ignoreCase: true }),
    rule('chars', undefined, '/a'),
    seg('segments', undefined, '/a'),
  ]);
  t.same(table.rules.map((r) => r.policy), ['segments', 'chars', 'chars-any-case']);
  t.equal(pick(table, 'h', '/a/1'), 'segments');
  t.equal(pick(table, 'h', '/a.json'), 'chars');
  t.equal(pick(table, 'h', '/A.json'), 'chars-any-case');
});

t.test('a Host that is not a valid host[:port] is refused once a host rule would judge it', async (t) => {
  const table = compileRoutes([rule('api', 'api.example.com'), rule('other', undefined, '/x')]);
  t.equal(pick(table, 'api.example.com:1@evil', '/'), 'invalid_host', 'never the api policy by a cut at ":"');
  t.equal(pick(table, 'api.example.com:1@evil', '/x'), 'invalid_host', 'nor a rule without a host');
  t.equal(pick(table, '', '/x'), 'invalid_host');
  t.equal(pick(table, 'api.example.com:8443', '/'), 'api');
  const noHosts = compileRoutes([rule('other', undefined, '/x')]);
  t.equal(pick(noHosts, 'api.example.com:1@evil', '/x'), 'other', 'no host rule: the Host does not decide');
});
