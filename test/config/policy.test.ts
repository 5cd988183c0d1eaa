// policies[] options: defaults, what each becomes, and the errors that name the key.
import t from 'tap';
import { buildConfig, ConfigError, parseConfig, type Config } from '../../src/config/load.js';

const SECRET = 'S3cr3t-value-xyz';
const endpoint = (overrides: Record<string, unknown> = {}) => ({
  name: 'as',
  url: 'https://as.example.com/introspect',
  clientId: 'authz',
  clientSecret: SECRET,
  ...overrides,
});

function build(policies: unknown[], extra: Record<string, unknown> = {}): Config {
  return buildConfig({ endpoints: [endpoint()], policies, ...extra }, 'test.yaml', { env: {} });
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

t.test('defaults of the policy options', async (t) => {
  const policy = build([{ name: 'p' }]).policies[0]!;
  t.same(policy.match, []);
  t.same(policy.scopes, []);
  t.equal(policy.scopeValidationCriteria, 'AND');
  t.equal(policy.skipClientIdValidation, true);
  t.equal(policy.consumerBy, 'client_id');
  t.same([...policy.allowedClients], []);
  t.same(policy.attributes.rules, []);
  t.equal(policy.identityFallback, null);
  t.equal(policy.exposeHeaders, false);
  t.equal(policy.attributesHeader, null);
  t.equal(policy.hideCredentials, false);
  t.equal(policy.passThrough, false);
  t.equal(policy.passThroughCredentials, false);
  t.equal(policy.enforcement, 'enforce', 'a policy denies unless told to dry-run');
});

t.test('options given are compiled', async (t) => {
  const config = parseConfig(
    `
endpoints:
  - { name: as, url: "https://as.example.com/introspect", authMethod: none }
policies:
  - name: orders
    match:
      - { host: API.example.com, pathSeparatedPrefix: /orders/ }
      - { host: "*.example.com" }
      - { pathPrefix: /Admin, ignoreCase: true }
    scopes: "orders:read  orders:write"
    scopeValidationCriteria: OR
    skipClientIdValidation: false
    consumerBy: username
    allowedClients: [alice, bob]
    attributes: ["+scope", "-*"]
    identityFallback: service
    exposeHeaders: true
    attributesHeader: x-auth-attributes
    hideCredentials: true
    passThrough: true
`,
    'policy.yaml',
    { env: {} },
  );
  const policy = config.policies[0]!;
  t.same(
    policy.match.map((rule) => ({ ...rule })),
    [
      { host: 'api.example.com', wildcard: false, pathPrefix: '/orders', separated: true, ignoreCase: false },
      { host: '.example.com', wildcard: true, pathPrefix: null, separated: false, ignoreCase: false },
      { host: null, wildcard: false, pathPrefix: '/admin', separated: false, ignoreCase: true },
    ],
  );
  t.same(policy.scopes, ['orders:read', 'orders:write']);
  t.equal(policy.scopeValidationCriteria, 'OR');
  t.equal(policy.skipClientIdValidation, false);
  t.equal(policy.consumerBy, 'username');
  t.same([...policy.allowedClients], ['alice', 'bob']);
  t.same(policy.attributes.source, ['+scope', '-*']);
  t.equal(policy.identityFallback, 'service');
  t.equal(policy.exposeHeaders, true);
  t.equal(policy.attributesHeader, 'x-auth-attributes');
  t.equal(policy.hideCredentials, true);
  t.equal(policy.passThrough, true);

  // check-config prints the resolved configuration as JSON: compiled parts print as written.
  const printed = JSON.parse(JSON.stringify(policy)) as Record<string, unknown>;
  t.same(printed.match, [
    { host: 'API.example.com', pathSeparatedPrefix: '/orders/' },
    { host: '*.example.com', pathPrefix: null },
    { host: null, pathPrefix: '/Admin', ignoreCase: true },
  ]);
  t.same(printed.allowedClients, ['alice', 'bob']);
  t.same(printed.attributes, ['+scope', '-*']);
});

t.test('errors name the key and never the value', async (t) => {
  const cases: Array<[string, unknown[], RegExp]> = [
    ['scopes not a string', [{ name: 'p', scopes: ['read'] }], /^test\.yaml: policies\[0\]\.scopes: must be a string/],
    ['scopes with a quote', [{ name: 'p', scopes: 'read "SECRETish"' }], /^test\.yaml: policies\[0\]\.scopes: must be scope tokens/],
    ['criteria', [{ name: 'p', scopeValidationCriteria: 'and' }], /policies\[0\]\.scopeValidationCriteria: must be one of AND, OR/],
    ['consumerBy', [{ name: 'p', consumerBy: 'sub' }], /policies\[0\]\.consumerBy: must be one of client_id, username/],
    ['skip as a word', [{ name: 'p', skipClientIdValidation: 'no' }], /policies\[0\]\.skipClientIdValidation: must be a boolean/],
    ['enforcement without a list', [{ name: 'p', skipClientIdValidation: false }], /policies\[0\]\.allowedClients: required when skipClientIdValidation is false/],
    ['a list that would be ignored', [{ name: 'p', allowedClients: ['a'] }], /policies\[0\]\.skipClientIdValidation: must be false when allowedClients is given/],
    ['allowedClients not a list', [{ name: 'p', allowedClients: 'a' }], /policies\[0\]\.allowedClients: must be a list$/],
    ['allowedClients of numbers', [{ name: 'p', allowedClients: [1] }], /policies\[0\]\.allowedClients: must be a list of strings/],
    ['allowedClients with an empty one', [{ name: 'p', skipClientIdValidation: false, allowedClients: ['a', ''] }], /policies\[0\]\.allowedClients\[1\]: must not be empty/],
    ['attributes not a list', [{ name: 'p', attributes: '+scope' }], /policies\[0\]\.attributes: must be a list$/],
    ['attribute without a sign', [{ name: 'p', attributes: ['+scope', 'SECRETish'] }], /policies\[0\]\.attributes\[1\]: must start with "\+" \(keep\) or "-" \(drop\)$/],
    ['empty attribute pattern', [{ name: 'p', attributes: ['-'] }], /policies\[0\]\.attributes\[0\]: the pattern is empty after the sign/],
    ['fallback with CR LF', [{ name: 'p', identityFallback: 'a\r\nSECRETish' }], /policies\[0\]\.identityFallback: must be 1 to 8192 bytes without control characters/],
    ['empty fallback', [{ name: 'p', identityFallback: '' }], /policies\[0\]\.identityFallback: must be 1 to/],
    ['exposeHeaders as a word', [{ name: 'p', exposeHeaders: 'yes' }], /policies\[0\]\.exposeHeaders: must be a boolean/],
    ['attributesHeader not a header name', [{ name: 'p', attributesHeader: 'X Attr' }], /policies\[0\]\.attributesHeader: must be a lower-case header name/],
    ['attributesHeader reserved', [{ name: 'p', attributesHeader: 'authorization' }], /policies\[0\]\.attributesHeader: authorization cannot carry attributes/],
    ['attributesHeader = identityHeader', [{ name: 'p', attributesHeader: 'x-auth-subject' }], /policies\[0\]\.attributesHeader: must differ/],
    ['attributesHeader = marker', [{ name: 'p', attributesHeader: 'x-auth-status' }], /policies\[0\]\.attributesHeader: must differ/],
    ['identityHeader = marker', [{ name: 'p', identityHeader: 'x-auth-status' }], /policies\[0\]\.identityHeader: x-auth-status is the pass-through marker/],
    ['identityHeader of Envoy', [{ name: 'p', identityHeader: 'x-envoy-original-path' }], /policies\[0\]\.identityHeader: .* cannot carry the identity/],
    ['identityHeader x-forwarded-for', [{ name: 'p', identityHeader: 'x-forwarded-for' }], /policies\[0\]\.identityHeader: .* cannot carry the identity/],
    ['prefix taking in x-forwarded-*', [{ name: 'p', headerPrefix: 'x-' }], /policies\[0\]\.headerPrefix: would take in headers/],
    ['prefix content-', [{ name: 'p', headerPrefix: 'content-' }], /policies\[0\]\.headerPrefix: would take in headers/],
    ['hideCredentials as a number', [{ name: 'p', hideCredentials: 1 }], /policies\[0\]\.hideCredentials: must be a boolean/],
    ['passThrough as a word', [{ name: 'p', passThrough: 'true' }], /policies\[0\]\.passThrough: must be a boolean/],
    ['enforcement unknown', [{ name: 'p', enforcement: 'audit' }], /policies\[0\]\.enforcement: must be one of enforce, dryRun/],
    ['match not a list', [{ name: 'p', match: { host: 'a.com' } }], /policies\[0\]\.match: must be a list$/],
    ['match of strings', [{ name: 'p', match: ['a.com'] }], /policies\[0\]\.match: must be a list of mappings/],
    ['empty rule', [{ name: 'p', match: [{}] }], /policies\[0\]\.match\[0\]: needs host, pathPrefix \(or pathSeparatedPrefix\) or both/],
    ['passThroughCredentials alone', [{ name: 'p', passThroughCredentials: true }], /policies\[0\]\.passThroughCredentials: has no effect without passThrough/],
    ['passThroughCredentials and hideCredentials', [{ name: 'p', passThrough: true, passThroughCredentials: true, hideCredentials: true }], /policies\[0\]\.passThroughCredentials: contradicts hideCredentials/],
    ['both prefixes', [{ name: 'p', match: [{ pathPrefix: '/a', pathSeparatedPrefix: '/a' }] }], /policies\[0\]\.match\[0\]: give pathPrefix or pathSeparatedPrefix, not both/],
    ['ignoreCase not a boolean', [{ name: 'p', match: [{ pathPrefix: '/a', ignoreCase: 'yes' }] }], /policies\[0\]\.match\[0\]\.ignoreCase: must be a boolean/],
    ['ignoreCase without a prefix', [{ name: 'p', match: [{ host: 'a.com', ignoreCase: true }] }], /policies\[0\]\.match\[0\]\.ignoreCase: needs a pathPrefix/],
    ['separated prefix with ..', [{ name: 'p', match: [{ pathSeparatedPrefix: '/a/../b' }] }], /policies\[0\]\.match\[0\]\.pathSeparatedPrefix: must be in normal form/],
    ['unknown rule key', [{ name: 'p', match: [{ host: 'a.com', path: '/x' }] }], /policies\[0\]\.match\[0\]\.path: unknown option/],
    ['host with port', [{ name: 'p', match: [{ host: 'a.com:443' }] }], /policies\[0\]\.match\[0\]\.host: must not include a port/],
    ['host not a string', [{ name: 'p', match: [{ host: 1 }] }], /policies\[0\]\.match\[0\]\.host: must be a string/],
    ['bad host', [{ name: 'p', match: [{ pathPrefix: '/a' }, { host: 'a.*.com' }] }], /policies\[0\]\.match\[1\]\.host: must be a host name/],
    ['prefix not a string', [{ name: 'p', match: [{ pathPrefix: 7 }] }], /policies\[0\]\.match\[0\]\.pathPrefix: must be a string/],
    ['relative prefix', [{ name: 'p', match: [{ pathPrefix: 'orders' }] }], /policies\[0\]\.match\[0\]\.pathPrefix: must start with "\/"/],
    ['prefix with ..', [{ name: 'p', match: [{ pathPrefix: '/a/../b' }] }], /policies\[0\]\.match\[0\]\.pathPrefix: must be in normal form/],
    ['prefix glob', [{ name: 'p', match: [{ pathPrefix: '/a/*' }] }], /policies\[0\]\.match\[0\]\.pathPrefix: must be a literal path prefix/],
  ];
  for (const [name, policies, message] of cases) {
    const error = errorOf(() => build(policies));
    t.match(error, message, name);
    t.notMatch(error, /SECRETish|S3cr3t/, `${name}: no value in the message`);
  }
});

t.test('rules that match the same requests are refused, within and across policies', async (t) => {
  t.match(
    errorOf(() => build([{ name: 'p', match: [{ host: 'a.com', pathSeparatedPrefix: '/x' }, { host: 'A.com', pathSeparatedPrefix: '/x/' }] }])),
    /^test\.yaml: policies\[0\]\.match\[1\]: same host and pathPrefix as policies\[0\]\.match\[0\]$/,
  );
  t.match(
    errorOf(() => build([{ name: 'p', match: [{ pathPrefix: '/X', ignoreCase: true }, { pathPrefix: '/x', ignoreCase: true }] }])),
    /policies\[0\]\.match\[1\]: same host and pathPrefix as policies\[0\]\.match\[0\]/,
    'ignoring case, /X and /x are one prefix',
  );
  t.ok(
    build([{ name: 'p', match: [{ pathPrefix: '/x' }, { pathPrefix: '/x/' }, { pathSeparatedPrefix: '/x' }, { pathPrefix: '/x', ignoreCase: true }] }]),
    'characters, segments and case make different rules',
  );
  t.match(
    errorOf(() =>
      build([{ name: 'p', match: [{ host: '*.a.com' }] }, { name: 'q', match: [{ pathPrefix: '/y' }, { host: '*.A.com', pathPrefix: '/' }] }], {
        defaultPolicy: 'p',
      }),
    ),
    /policies\[1\]\.match\[1\]: same host and pathPrefix as policies\[0\]\.match\[0\]/,
    'pathPrefix "/" is the same as none',
  );
  t.ok(build([{ name: 'p', match: [{ host: 'a.com' }, { host: '*.a.com' }, { host: 'a.com', pathPrefix: '/x' }] }]), 'different rules are fine');
});

t.test('a prefix rule that a more specific host hides is a warning naming both rules', async (t) => {
  const warnings: string[] = [];
  const policies = [
    { name: 'orders', match: [{ host: 'api.example.com', pathPrefix: '/orders' }, { host: '*.shop.example.com' }] },
    { name: 'admin', match: [{ pathPrefix: '/admin' }] },
  ];
  const config = buildConfig({ endpoints: [endpoint({ issuer: 'https://as.example.com' })], policies, defaultPolicy: 'orders' }, 'test.yaml', {
    env: {},
    warn: (message) => warnings.push(message),
  });
  t.ok(config, 'legal: Envoy picks the virtual host first too');
  t.same(warnings, [
    'test.yaml: policies[1].match[0]: does not apply on host *.shop.example.com: policies[0].match[1] (policy orders) matches there ' +
      'first, since a rule with a more specific host always wins; add a rule for that host if this prefix should apply there too',
  ]);

  const quiet = (list: unknown[]) => {
    const seen: string[] = [];
    buildConfig({ endpoints: [endpoint({ issuer: 'https://as.example.com' })], policies: list, defaultPolicy: 'admin' }, 'test.yaml', {
      env: {},
      warn: (message) => seen.push(message),
    });
    return seen;
  };
  t.same(
    quiet([...policies.slice(0, 1), { name: 'admin', match: [{ pathPrefix: '/admin' }, { host: '*.shop.example.com', pathPrefix: '/admin' }] }]),
    [],
    'a rule of its own on that host: no warning',
  );
  t.same(
    quiet([{ name: 'orders', match: [{ host: 'api.example.com', pathPrefix: '/orders' }] }, { name: 'admin', match: [{ pathPrefix: '/admin' }] }]),
    [],
    'host rules that do not take in the prefix: no warning',
  );
  t.same(
    quiet([{ name: 'admin', match: [{ host: 'a.example.com' }, { host: '*.example.com', pathPrefix: '/admin' }] }]),
    [],
    'the same policy wins anyway: no warning',
  );
  t.equal(
    quiet([{ name: 'admin', match: [{ host: '*.example.com', pathPrefix: '/admin' }] }, { name: 'a', match: [{ host: 'a.example.com' }] }]).length,
    1,
    'a wildcard rule hidden by an exact host under it',
  );
});

t.test('a restricted endpoint serves only the policies that name it', async (t) => {
  const endpoints = [endpoint({ name: 'partners', restricted: true }), endpoint({ name: 'open' })];
  t.match(
    errorOf(() => buildConfig({ endpoints: [endpoints[0]], policies: [{ name: 'p' }] }, 'test.yaml', { env: {} })),
    /^test\.yaml: policies\[0\]\.endpoint: required when .* the only one is restricted/,
  );
  t.match(
    errorOf(() => buildConfig({ endpoints: [endpoints[0]] }, 'test.yaml', { env: {} })),
    /policies\[0\]\.endpoint: required/,
    'nor the implicit default policy',
  );
  t.match(
    errorOf(() => buildConfig({ endpoints, policies: [{ name: 'p' }] }, 'test.yaml', { env: {} })),
    /policies\[0\]\.endpoint: required when more than one endpoint/,
    'never picked implicitly beside an open endpoint either',
  );
  const named = buildConfig({ endpoints, policies: [{ name: 'p', endpoint: 'partners' }] }, 'test.yaml', { env: {} });
  t.equal(named.policies[0]!.endpoint, 'partners');
});

t.test('sender-constraint options: defaults, and errors that name the key', async (t) => {
  const config = build([{ name: 'p' }]);
  const policy = config.policies[0]!;
  t.equal(policy.senderConstraint, 'ifBound', 'bound tokens are checked unless turned off');
  t.equal(policy.certificateSource, 'peer', 'never a header unless named');
  t.same(policy.dpopAlgorithms, ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519']);
  t.equal(policy.dpopProofWindow, 60);
  t.equal(policy.dpopNonce, false);
  t.equal(policy.removeDpopHeader, false);
  t.equal(policy.bindingHeader, null);
  t.same(config.dpop, { maxProofLength: 4096, replayEntries: 100_000, nonceLifetime: 300, keyCacheEntries: 1000 });

  t.match(errorOf(() => build([{ name: 'p', senderConstraint: 'maybe' }])), /policies\[0\]\.senderConstraint: must be one of off, ifBound, required/);
  t.match(errorOf(() => build([{ name: 'p', certificateSource: 'header' }])), /policies\[0\]\.certificateSource: must be one of/);
  t.match(errorOf(() => build([{ name: 'p', dpopAlgorithms: ['ES256', 'HS256'] }])), /policies\[0\]\.dpopAlgorithms\[1\]: must be one of .*asymmetric/);
  t.match(errorOf(() => build([{ name: 'p', dpopAlgorithms: ['none'] }])), /policies\[0\]\.dpopAlgorithms\[0\]/);
  t.match(errorOf(() => build([{ name: 'p', dpopAlgorithms: [] }])), /policies\[0\]\.dpopAlgorithms: must name at least one/);
  t.match(errorOf(() => build([{ name: 'p', dpopProofWindow: 0 }])), /policies\[0\]\.dpopProofWindow/);
  t.match(errorOf(() => build([{ name: 'p', bindingHeader: 'x-auth-subject' }])), /policies\[0\]\.bindingHeader: must differ/);
  t.match(errorOf(() => build([{ name: 'p', bindingHeader: 'authorization' }])), /policies\[0\]\.bindingHeader: authorization cannot carry/);
  t.match(errorOf(() => build([{ name: 'p', bindingHeader: 'x-auth-binding', senderConstraint: 'off' }])), /policies\[0\]\.bindingHeader: has no effect/);
  t.match(errorOf(() => build([{ name: 'p', dpopNonce: true, senderConstraint: 'off' }])), /policies\[0\]\.dpopNonce: has no effect/);
  t.match(errorOf(() => build([{ name: 'p' }], { dpop: { replayEntries: 10 } })), /dpop\.replayEntries/);
});
