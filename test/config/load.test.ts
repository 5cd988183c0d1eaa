import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import t, { type Test } from 'tap';
import { buildConfig, ConfigError, configWarnings, loadConfigFile, parseConfig, type Config } from '../../src/config/load.js';
import { Secret } from '../../src/config/secret.js';

const SECRET = 'S3cr3t-value-xyz';
const URL_AS = 'https://as.example.com/oauth2/introspect';

/** One valid endpoint; overrides are merged in. */
function endpoint(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'as', url: URL_AS, clientId: 'authz', clientSecret: SECRET, ...overrides };
}

/** buildConfig with an empty environment, so the test's own environment never leaks in. */
function build(raw: unknown, env: NodeJS.ProcessEnv = {}): Config {
  return buildConfig(raw, 'test.yaml', { env });
}

/** The ConfigError a build throws, failing the test when it does not throw one. */
function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw new Error(`expected a ConfigError, got ${String(error)}`);
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'authz-config-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('defaults', async (t) => {
  const config = build({ endpoints: [endpoint()] });
  t.same(config.server, {
    grpc: { host: '0.0.0.0', port: 9001, maxCheckRequestBytes: 16 * 1024 * 1024 },
    ops: { host: '0.0.0.0', port: 9090, maxConnections: 64, headersTimeout: 5000 },
    admin: { host: '127.0.0.1', port: 9091 },
    http: {
      enabled: false,
      host: '0.0.0.0',
      port: 9002,
      decisionTimeout: 5000,
      maxConnections: 1024,
      headersTimeout: 10_000,
      maxHeaderBytes: 80 * 1024,
    },
    shutdownTimeout: 10_000,
    envoyTimeout: 0,
    maxTokenLength: 8192,
    workers: 1,
  });
  t.same(config.log, { level: 'info', decisions: 'all', allowSampleRate: 1, identity: false });
  t.same(config.cache, { maxCacheEntries: 1000, validatedTokenTTL: 600, negativeTTL: 10, maxNegativeEntries: 1000 });
  t.equal(config.policySelector, 'policy');
  t.equal(config.defaultPolicy, 'default');

  t.equal(config.endpoints.length, 1);
  const ep = config.endpoints[0]!;
  t.equal(ep.name, 'as');
  t.equal(ep.url, URL_AS);
  t.equal(ep.authMethod, 'client_secret_basic', 'basic by default');
  t.equal(ep.clientId, 'authz');
  t.ok(ep.clientSecret instanceof Secret, 'the secret is wrapped');
  t.equal(ep.clientSecret?.reveal(), SECRET);
  t.equal(ep.authorizationValue, null);
  t.equal(ep.tokenTypeHint, 'access_token');
  t.equal(ep.authenticationTimeout, 10_000);
  t.equal(ep.maxConnections, 32);
  t.equal(ep.maxResponseBytes, 65_536);
  t.equal(ep.clockSkew, 0);
  t.equal(ep.restricted, false);

  t.equal(config.policies.length, 1, 'one implicit policy');
  const policy = config.policies[0]!;
  t.equal(policy.name, 'default');
  t.equal(policy.endpoint, 'as', 'using the only endpoint');
  t.equal(policy.realm, 'api');
  t.equal(policy.mappedIdentity.source, '{sub|username|client_id}');
  t.same(policy.mappedIdentity.claims, ['sub', 'username', 'client_id']);
  t.equal(policy.identityHeader, 'x-auth-subject');
  t.equal(policy.headerPrefix, 'x-auth-');
  t.equal(policy.unreachableStatus, 401);
  t.equal(policy.badResponseStatus, 500);
});

t.test('options given are kept', async (t) => {
  const config = build({
    server: { grpc: { host: '127.0.0.1', port: 0 }, maxTokenLength: 4096 },
    cache: { maxCacheEntries: 0, validatedTokenTTL: 30 },
    endpoints: [endpoint({ tokenTypeHint: '', authenticationTimeout: 250, clockSkew: 5, authMethod: 'client_secret_post' })],
    policies: [{ name: 'p', realm: 'orders', mappedIdentity: '{iss}/{sub}', unreachableStatus: 503 }],
  });
  t.same(config.server.grpc, { host: '127.0.0.1', port: 0, maxCheckRequestBytes: 16 * 1024 * 1024 });
  t.equal(config.server.maxTokenLength, 4096);
  t.same(config.cache, { maxCacheEntries: 0, validatedTokenTTL: 30, negativeTTL: 10, maxNegativeEntries: 1000 });
  t.equal(config.endpoints[0]!.tokenTypeHint, '');
  t.equal(config.endpoints[0]!.authenticationTimeout, 250);
  t.equal(config.endpoints[0]!.clockSkew, 5);
  t.equal(config.endpoints[0]!.authMethod, 'client_secret_post');
  t.equal(config.defaultPolicy, 'p', 'the only policy is the default');
  t.equal(config.policies[0]!.realm, 'orders');
  t.equal(config.policies[0]!.mappedIdentity.source, '{iss}/{sub}');
  t.equal(config.policies[0]!.unreachableStatus, 503);
  t.equal(config.policies[0]!.endpoint, 'as');
});

t.test('YAML syntax errors name line and column', async (t) => {
  const text = ['endpoints:', '  - name: as', `    url: ${URL_AS}`, '    clientId: a', '    clientId: b', ''].join('\n');
  const error = errorOf(() => parseConfig(text, 'conf.yaml', { env: {} }));
  t.equal(error.message, 'conf.yaml: YAML syntax error at line 5, column 5: duplicate key');

  const indent = errorOf(() => parseConfig('endpoints:\n  - name: as\n   url: x\n', 'conf.yaml', { env: {} }));
  t.match(indent.message, /^conf\.yaml: YAML syntax error at line 3, column \d+: /);

  const tabs = errorOf(() => parseConfig('endpoints:\n\t- name: as\n', 'conf.yaml', { env: {} }));
  t.match(tabs.message, /^conf\.yaml: YAML syntax error at line 2, column 1: /);
  t.notMatch(tabs.message, /\n/, 'one line, without the source excerpt');
});

t.test('a YAML error never quotes the source', async (t) => {
  const cases: Array<[string, string]> = [
    ['unquoted secret read as an alias', `clientSecret: *${SECRET}`],
    ['unclosed quote', `clientSecret: "${SECRET}`],
    ['duplicate key', `clientSecret: ${SECRET}\n    clientSecret: ${SECRET}`],
    ['nested mapping', `clientSecret: ${SECRET}: x: y`],
    ['comment glued to a quoted value', `clientSecret: "${SECRET}"#x`],
  ];
  for (const [name, line] of cases) {
    const text = `endpoints:\n  - name: as\n    url: ${URL_AS}\n    clientId: a\n    ${line}\n`;
    const error = errorOf(() => parseConfig(text, 'conf.yaml', { env: {} }));
    t.match(error.message, /^conf\.yaml: YAML (syntax )?error/, `${name}: a YAML error`);
    t.notOk(error.message.includes(SECRET), `${name}: no secret in ${JSON.stringify(error.message)}`);
  }
});

t.test('empty YAML means no endpoints', async (t) => {
  for (const text of ['', '# nothing\n', '---\n']) {
    t.equal(
      errorOf(() => parseConfig(text, 'conf.yaml', { env: {} })).message,
      'conf.yaml: endpoints: at least one introspection endpoint is required',
    );
  }
});

t.test('the top level must be a mapping', async (t) => {
  for (const raw of [null, [], 'endpoints', 42]) {
    t.equal(errorOf(() => build(raw)).message, 'test.yaml: must be a mapping of options at the top level', JSON.stringify(raw));
  }
  t.equal(
    errorOf(() => parseConfig('- a\n- b\n', 'conf.yaml', { env: {} })).message,
    'conf.yaml: must be a mapping of options at the top level',
  );
});

t.test('unknown keys are rejected by name', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['top level', { endpoints: [endpoint()], endpoint: 'as' }, /^test\.yaml: endpoint: unknown option$/],
    ['nested', { endpoints: [endpoint()], log: { lvl: 'debug' } }, /log\.lvl: unknown option/],
    ['in an endpoint', { endpoints: [endpoint({ clientSecretFiles: '/x' })] }, /^test\.yaml: endpoints\[0\]\.clientSecretFiles: unknown option$/],
    ['in the second endpoint', { endpoints: [endpoint(), endpoint({ name: 'b', timeout: 5 })] }, /endpoints\[1\]\.timeout: unknown option/],
    ['in a policy', { endpoints: [endpoint()], policies: [{ name: 'p', scope: 'a' }] }, /policies\[0\]\.scope: unknown option/],
  ];
  for (const [name, raw, message] of cases) t.match(errorOf(() => build(raw)).message, message, name);
});

t.test('wrong types are rejected by name', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['port string', { endpoints: [endpoint()], server: { grpc: { port: 'x' } } }, /server\.grpc\.port: must be a number/],
    ['port string of digits and more', { endpoints: [endpoint()], server: { grpc: { port: '9001x' } } }, /server\.grpc\.port: must be a number/],
    ['timeout with a unit', { endpoints: [endpoint({ authenticationTimeout: '10s' })] }, /endpoints\[0\]\.authenticationTimeout: must be a number/],
    ['boolean as a word', { endpoints: [endpoint({ restricted: 'no' })] }, /endpoints\[0\]\.restricted: must be a boolean/],
    ['port too big', { endpoints: [endpoint()], server: { grpc: { port: 70000 } } }, /server\.grpc\.port: must be a whole number/],
    ['CheckRequest limit too small', { endpoints: [endpoint()], server: { grpc: { maxCheckRequestBytes: 65536 } } }, /server\.grpc\.maxCheckRequestBytes: must be a whole number/],
    ['no ops connection', { endpoints: [endpoint()], server: { ops: { maxConnections: 0 } } }, /server\.ops\.maxConnections: must be a whole number/],
    ['ops headers timeout above the request timeout', { endpoints: [endpoint()], server: { ops: { headersTimeout: 20_000 } } }, /server\.ops\.headersTimeout: must be a whole number/],
    ['ttl negative', { endpoints: [endpoint()], cache: { validatedTokenTTL: -1 } }, /cache\.validatedTokenTTL: must be a whole number/],
    ['entries fractional', { endpoints: [endpoint()], cache: { maxCacheEntries: 1.5 } }, /cache\.maxCacheEntries: must be a whole number/],
    ['log level', { endpoints: [endpoint()], log: { level: 'loud' } }, /log\.level: must be one of fatal, error/],
    ['policySelector empty', { endpoints: [endpoint()], policySelector: ' ' }, /policySelector: must be a non-empty string/],
    ['endpoint item not a mapping', { endpoints: ['as'] }, /endpoints\[0\]: must be a mapping/],
    ['endpoint name', { endpoints: [endpoint({ name: 'has space' })] }, /endpoints\[0\]\.name: must be 1-64 characters/],
    ['endpoint url scheme', { endpoints: [endpoint({ url: 'ftp://as/x' })] }, /endpoints\[0\]\.url: must use http or https/],
    ['endpoint url relative', { endpoints: [endpoint({ url: '/introspect' })] }, /endpoints\[0\]\.url: must be an absolute http\(s\) URL/],
    ['endpoint url credentials', { endpoints: [endpoint({ url: 'https://u:p@as/x' })] }, /url: must not carry credentials/],
    ['endpoint maxConnections', { endpoints: [endpoint({ maxConnections: 'many' })] }, /endpoints\[0\]\.maxConnections: must be a number/],
    ['endpoint timeout zero', { endpoints: [endpoint({ authenticationTimeout: 0 })] }, /authenticationTimeout: must be a whole number/],
    ['endpoint restricted', { endpoints: [endpoint({ restricted: 1 })] }, /endpoints\[0\]\.restricted: must be a boolean/],
    ['endpoint authMethod', { endpoints: [endpoint({ authMethod: 'magic' })] }, /endpoints\[0\]\.authMethod: must be one of client_secret_basic/],
    ['endpoint clientId number', { endpoints: [endpoint({ clientId: 7 })] }, /endpoints\[0\]\.clientId: must be a string/],
    ['policy status', { endpoints: [endpoint()], policies: [{ name: 'p', unreachableStatus: 200 }] }, /policies\[0\]\.unreachableStatus: must be a whole number from 400 to 599/],
    ['policy header', { endpoints: [endpoint()], policies: [{ name: 'p', identityHeader: 'X-User' }] }, /policies\[0\]\.identityHeader: must be a lower-case header name/],
    ['policy prefix', { endpoints: [endpoint()], policies: [{ name: 'p', headerPrefix: 'x-auth' }] }, /policies\[0\]\.headerPrefix: must be a lower-case header name prefix/],
    ['policy realm quote', { endpoints: [endpoint()], policies: [{ name: 'p', realm: 'a"b' }] }, /policies\[0\]\.realm: must be 1-128 printable ASCII/],
    ['policy reserved header', { endpoints: [endpoint()], policies: [{ name: 'p', identityHeader: 'authorization' }] }, /policies\[0\]\.identityHeader: authorization cannot carry the identity/],
  ];
  for (const [name, raw, message] of cases) t.match(errorOf(() => build(raw)).message, message, name);
});

t.test('lists given as mappings', async (t) => {
  t.equal(
    errorOf(() => build({ endpoints: { as: { url: URL_AS } } })).message,
    'test.yaml: endpoints: must be a list',
  );
  t.equal(
    errorOf(() => build({ endpoints: [endpoint()], policies: { default: {} } })).message,
    'test.yaml: policies: must be a list',
  );
  t.equal(errorOf(() => build({ endpoints: null })).message, 'test.yaml: endpoints: must be a list');
  const yaml = `endpoints:\n  as:\n    url: ${URL_AS}\n`;
  t.equal(errorOf(() => parseConfig(yaml, 'conf.yaml', { env: {} })).message, 'conf.yaml: endpoints: must be a list');
});

t.test('names are unique', async (t) => {
  t.equal(
    errorOf(() => build({ endpoints: [endpoint(), endpoint()] })).message,
    'test.yaml: endpoints: the name "as" is used twice',
  );
  t.equal(
    errorOf(() => build({ endpoints: [endpoint()], policies: [{ name: 'p' }, { name: 'q' }, { name: 'p' }], defaultPolicy: 'p' })).message,
    'test.yaml: policies: the name "p" is used twice',
  );
});

t.test('policies and endpoints must fit together', async (t) => {
  t.equal(
    errorOf(() => build({ endpoints: [endpoint()], policies: [{ name: 'p', endpoint: 'nope' }] })).message,
    'test.yaml: policies[0].endpoint: no endpoint is named "nope"',
  );
  t.match(
    errorOf(() => build({ endpoints: [endpoint(), endpoint({ name: 'b' })] })).message,
    /^test\.yaml: policies\[0\]\.endpoint: required when more than one endpoint is configured/,
    'the implicit policy cannot choose between two endpoints',
  );
  t.match(
    errorOf(() => build({ endpoints: [endpoint({ restricted: true })] })).message,
    /^test\.yaml: policies\[0\]\.endpoint: required when .* the only one is restricted/,
    'a restricted endpoint is never picked implicitly',
  );
  t.match(
    errorOf(() => build({ endpoints: [endpoint({ restricted: true })], policies: [{ name: 'p' }] })).message,
    /policies\[0\]\.endpoint: required/,
  );
  const explicit = build({ endpoints: [endpoint({ restricted: true })], policies: [{ name: 'p', endpoint: 'as' }] });
  t.equal(explicit.policies[0]!.endpoint, 'as', 'a policy may name a restricted endpoint');
  t.equal(explicit.endpoints[0]!.restricted, true);
});

t.test('defaultPolicy', async (t) => {
  const two = { endpoints: [endpoint()], policies: [{ name: 'a' }, { name: 'b' }] };
  t.equal(
    errorOf(() => build(two)).message,
    'test.yaml: defaultPolicy: required when more than one policy is configured',
  );
  t.equal(
    errorOf(() => build({ ...two, defaultPolicy: 'c' })).message,
    'test.yaml: defaultPolicy: no policy is named "c"',
  );
  t.equal(build({ ...two, defaultPolicy: 'b' }).defaultPolicy, 'b');
  t.equal(
    errorOf(() => build({ endpoints: [endpoint()], defaultPolicy: 'main' })).message,
    'test.yaml: defaultPolicy: no policy is named "main"',
    'the implicit policy is named "default"',
  );
});

t.test('authMethod requirements', async (t) => {
  const errors: Array<[string, Record<string, unknown>, string]> = [
    // (Without authMethod, a secret without clientId is a bearer secret: see test/config/endpoint.test.ts.)
    ['basic without clientId', { authMethod: 'client_secret_basic', clientId: null }, 'test.yaml: endpoints[0].clientId: required by authMethod client_secret_basic'],
    ['basic without secret', { clientSecret: null }, 'test.yaml: endpoints[0].clientSecret: required by authMethod client_secret_basic (inline, clientSecretFile or clientSecretEnv)'],
    ['post without clientId', { authMethod: 'client_secret_post', clientId: null }, 'test.yaml: endpoints[0].clientId: required by authMethod client_secret_post'],
    ['post without secret', { authMethod: 'client_secret_post', clientSecret: null }, 'test.yaml: endpoints[0].clientSecret: required by authMethod client_secret_post (inline, clientSecretFile or clientSecretEnv)'],
    ['authorization_value without value', { authMethod: 'authorization_value' }, 'test.yaml: endpoints[0].authorizationValue: required by authMethod authorization_value'],
    ['empty inline secret', { clientSecret: '' }, 'test.yaml: endpoints[0].clientSecret: is empty'],
  ];
  for (const [name, overrides, message] of errors) {
    t.equal(errorOf(() => build({ endpoints: [endpoint(overrides)] })).message, message, name);
  }

  const inferred = build({ endpoints: [{ name: 'as', url: URL_AS, authorizationValue: `Basic ${SECRET}` }] });
  t.equal(inferred.endpoints[0]!.authMethod, 'authorization_value', 'inferred from authorizationValue');
  t.equal(inferred.endpoints[0]!.authorizationValue?.reveal(), `Basic ${SECRET}`);
  t.equal(inferred.endpoints[0]!.clientSecret, null);

  const none = build({ endpoints: [{ name: 'as', url: URL_AS, authMethod: 'none' }] });
  t.equal(none.endpoints[0]!.authMethod, 'none');
  t.equal(none.endpoints[0]!.clientId, null);

  const post = build({ endpoints: [endpoint({ authMethod: 'client_secret_post' })] });
  t.equal(post.endpoints[0]!.authMethod, 'client_secret_post');

  const basicWins = build({ endpoints: [endpoint({ authMethod: 'client_secret_basic', authorizationValue: 'Bearer x' })] });
  t.equal(basicWins.endpoints[0]!.authMethod, 'client_secret_basic', 'an explicit authMethod wins');

  for (const bad of [`Basic ${SECRET}\r\nX-Evil: 1`, `Basic ${SECRET}\n`, `Basic\u0000${SECRET}`]) {
    const error = errorOf(() => build({ endpoints: [{ name: 'as', url: URL_AS, authorizationValue: bad }] }));
    t.equal(error.message, 'test.yaml: endpoints[0].authorizationValue: must not contain control characters');
  }
});

t.test('secrets from files', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'client-secret');
  writeFileSync(file, `  \t${SECRET}\n\n`);
  const config = build({ endpoints: [endpoint({ clientSecret: null, clientSecretFile: file })] });
  t.equal(config.endpoints[0]!.clientSecret?.reveal(), SECRET, 'read and trimmed');

  const valueFile = join(dir, 'authorization-value');
  writeFileSync(valueFile, `Basic ${SECRET}\n`);
  const fromFile = build({ endpoints: [{ name: 'as', url: URL_AS, authorizationValueFile: valueFile }] });
  t.equal(fromFile.endpoints[0]!.authMethod, 'authorization_value');
  t.equal(fromFile.endpoints[0]!.authorizationValue?.reveal(), `Basic ${SECRET}`);

  const missing = join(dir, 'nope');
  t.equal(
    errorOf(() => build({ endpoints: [endpoint({ clientSecret: null, clientSecretFile: missing })] })).message,
    `test.yaml: endpoints[0].clientSecretFile: cannot read ${missing}: ENOENT`,
  );
  t.equal(
    errorOf(() => build({ endpoints: [endpoint({ clientSecret: null, clientSecretFile: dir })] })).message,
    `test.yaml: endpoints[0].clientSecretFile: cannot read ${dir}: EISDIR`,
    'a directory is not a secret file',
  );
  t.equal(
    errorOf(() => build({ endpoints: [{ name: 'as', url: URL_AS, authorizationValueFile: missing }] })).message,
    `test.yaml: endpoints[0].authorizationValueFile: cannot read ${missing}: ENOENT`,
  );

  const blank = join(dir, 'blank');
  writeFileSync(blank, ' \n');
  t.equal(
    errorOf(() => build({ endpoints: [endpoint({ clientSecret: null, clientSecretFile: blank })] })).message,
    'test.yaml: endpoints[0].clientSecret: is empty',
  );
});

t.test('secrets from the environment', async (t) => {
  const env = { AS_SECRET: SECRET };
  const config = build({ endpoints: [endpoint({ clientSecret: null, clientSecretEnv: 'AS_SECRET' })] }, env);
  t.equal(config.endpoints[0]!.clientSecret?.reveal(), SECRET, 'read from the env option');

  process.env.AUTHZ_TEST_ONLY_IN_PROCESS_ENV = 'from-process-env';
  t.teardown(() => {
    delete process.env.AUTHZ_TEST_ONLY_IN_PROCESS_ENV;
  });
  t.equal(
    errorOf(() => build({ endpoints: [endpoint({ clientSecret: null, clientSecretEnv: 'AUTHZ_TEST_ONLY_IN_PROCESS_ENV' })] }, {})).message,
    'test.yaml: endpoints[0].clientSecretEnv: environment variable AUTHZ_TEST_ONLY_IN_PROCESS_ENV is not set',
    'the env option replaces process.env',
  );
  t.equal(
    errorOf(() => build({ endpoints: [endpoint({ clientSecret: null, clientSecretEnv: 'AS_SECRET' })] }, { AS_SECRET: '' })).message,
    'test.yaml: endpoints[0].clientSecret: is empty',
  );
});

t.test('a secret given twice is rejected', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'secret');
  writeFileSync(file, 'other');
  const env = { AS_SECRET: 'other' };
  const cases: Array<[string, Record<string, unknown>]> = [
    ['inline and file', { clientSecretFile: file }],
    ['inline and env', { clientSecretEnv: 'AS_SECRET' }],
    ['file and env', { clientSecret: null, clientSecretFile: file, clientSecretEnv: 'AS_SECRET' }],
  ];
  for (const [name, overrides] of cases) {
    const error = errorOf(() => build({ endpoints: [endpoint(overrides)] }, env));
    t.equal(
      error.message,
      'test.yaml: endpoints[0].clientSecret: give it inline, as a file or as an environment variable, not several',
      name,
    );
  }
  t.match(
    errorOf(() => build({ endpoints: [{ name: 'as', url: URL_AS, authorizationValue: 'x', authorizationValueFile: file }] })).message,
    /endpoints\[0\]\.authorizationValue: give it inline, as a file or as an environment variable, not several/,
  );
});

t.test('environment overrides', async (t) => {
  const config = build({ endpoints: [endpoint()], server: { grpc: { port: 7000 } } }, { GRPC_PORT: '9100', LOG_LEVEL: 'debug', GRPC_HOST: '::' });
  t.equal(config.server.grpc.port, 9100, 'GRPC_PORT wins over the file, as a number');
  t.equal(config.log.level, 'debug');
  t.equal(config.server.grpc.host, '::');
  const plain = build({ endpoints: [endpoint()], server: { grpc: { port: 7000 } } }, {});
  t.equal(plain.server.grpc.port, 7000, 'the file value without the variable');
  t.match(errorOf(() => build({ endpoints: [endpoint()] }, { GRPC_PORT: 'nine' })).message, /server\.grpc\.port \(from GRPC_PORT\): must be a whole number/);
  t.match(errorOf(() => build({ endpoints: [endpoint()] }, { GRPC_PORT: '9001x' })).message, /server\.grpc\.port \(from GRPC_PORT\): must be a whole number/);
  t.match(errorOf(() => build({ endpoints: [endpoint()] }, { LOG_LEVEL: 'loud' })).message, /log\.level \(from LOG_LEVEL\): must be one of/);
  t.equal(build({ endpoints: [endpoint()] }, { SHUTDOWN_TIMEOUT: '2500' }).server.shutdownTimeout, 2500);
  t.equal(build({ endpoints: [endpoint()], server: { workers: 2 } }, { WORKERS: '4' }).server.workers, 4, 'WORKERS wins over server.workers');
  t.match(errorOf(() => build({ endpoints: [endpoint()] }, { WORKERS: 'four' })).message, /server\.workers \(from WORKERS\): must be a whole number/);
  t.match(errorOf(() => build({ endpoints: [endpoint()] }, { WORKERS: '0' })).message, /server\.workers \(from WORKERS\): must be a whole number from 1 to 64/);
});

t.test('an invalid mappedIdentity names the key', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['{sub', /^test\.yaml: policies\[0\]\.mappedIdentity: unclosed "\{" at character 1$/],
    ['sub}', /^test\.yaml: policies\[0\]\.mappedIdentity: unmatched "\}"/],
    ['static', /^test\.yaml: policies\[0\]\.mappedIdentity: must contain at least one placeholder/],
    ['{sub|}', /^test\.yaml: policies\[0\]\.mappedIdentity: empty claim name/],
  ];
  for (const [template, message] of cases) {
    t.match(errorOf(() => build({ endpoints: [endpoint()], policies: [{ name: 'p', mappedIdentity: template }] })).message, message, template);
  }
  t.match(
    errorOf(() => build({ endpoints: [endpoint()], policies: [{ name: 'p', mappedIdentity: '' }] })).message,
    /policies\[0\]\.mappedIdentity: must be a non-empty string/,
  );
});

t.test('errors are ConfigErrors with a code', async (t) => {
  const error = errorOf(() => build({ endpoints: [] }));
  t.equal(error.code, 'ERR_CONFIG');
  t.equal(error.name, 'ConfigError');
  t.ok(error instanceof Error);
  t.equal(error.message, 'test.yaml: endpoints: at least one introspection endpoint is required');
});

t.test('no error message contains a configured secret', async (t) => {
  const broken: Array<[string, unknown]> = [
    ['wrong type in the same endpoint', { endpoints: [endpoint({ maxConnections: 'many' })] }],
    ['unknown key in the same endpoint', { endpoints: [endpoint({ clientSecretFiles: '/x' })] }],
    ['both in the same endpoint', { endpoints: [endpoint({ maxConnections: 'many', bogus: true })] }],
    ['bad url in the same endpoint', { endpoints: [endpoint({ url: 'ftp://x' })] }],
    ['bad authMethod in the same endpoint', { endpoints: [endpoint({ authMethod: 'magic' })] }],
    ['bad name in the same endpoint', { endpoints: [endpoint({ name: 'a b' })] }],
    ['broken second endpoint', { endpoints: [endpoint(), endpoint({ name: 'b', clockSkew: -1 })] }],
    ['broken top-level key too', { endpoints: [endpoint({ maxConnections: 0 })], cache: { maxCacheEntries: 'x' }, extra: 1 }],
    ['broken policy beside the endpoint', { endpoints: [endpoint()], policies: [{ name: 'p', realm: 7 }] }],
    ['secret given twice', { endpoints: [endpoint({ clientSecretEnv: 'X' })] }],
    ['secret as the clientId too', { endpoints: [endpoint({ clientId: SECRET, maxConnections: 'many' })] }],
    ['line separator in another value', { endpoints: [endpoint({ clientId: 'a\u2028b', maxConnections: 'many' })] }],
    ['paragraph separator in an unknown key', { endpoints: [endpoint({ 'bad\u2029key': 1 })] }],
    ['line separator in the secret', { endpoints: [endpoint({ clientSecret: `${SECRET}\u2028tail`, maxConnections: 'many' })] }],
    ['authorizationValue with a broken key', { endpoints: [{ name: 'as', url: URL_AS, authorizationValue: `Basic ${SECRET}`, restricted: 'no' }] }],
    ['authorizationValue with a line separator', { endpoints: [{ name: 'as', url: URL_AS, authorizationValue: `Basic ${SECRET}\u2028`, x: 1 }] }],
    ['authorizationValue with CR LF', { endpoints: [{ name: 'as', url: URL_AS, authorizationValue: `Basic ${SECRET}\r\n` }] }],
    ['secret of the wrong type', { endpoints: [endpoint({ clientSecret: { value: SECRET } })] }],
  ];
  for (const [name, raw] of broken) {
    const error = errorOf(() => build(raw));
    // The message goes into the assertion name escaped: a raw U+2028 would garble tap's output.
    const shown = JSON.stringify(error.message.slice(0, 100)).replace(/[\u2028\u2029]/g, '?');
    t.notOk(error.message.includes(SECRET), `${name}: ${shown}`);
    t.notOk(error.message.includes('S3cr3t'), `${name}: not even part of it`);
  }
});

t.test('a loaded config never prints its secrets', async (t) => {
  const config = build({
    endpoints: [
      endpoint(),
      { name: 'b', url: URL_AS, authorizationValue: `Basic ${SECRET}-b` },
      endpoint({ name: 'c', clientSecret: null, clientSecretEnv: 'C_SECRET' }),
    ],
    policies: [{ name: 'p', endpoint: 'as' }],
  }, { C_SECRET: `${SECRET}-c` });
  const json = JSON.stringify(config);
  const inspected = inspect(config, { depth: 10 });
  for (const [name, text] of [['JSON', json], ['inspect', inspected], ['String', `${config.endpoints[0]!.clientSecret}`]] as const) {
    t.notOk(text.includes('S3cr3t'), `${name} has no secret`);
    t.match(text, /\[redacted\]/, `${name} shows that something was redacted`);
  }
  const parsed = JSON.parse(json) as Config;
  t.equal(parsed.endpoints[0]!.clientSecret as unknown, '[redacted]');
  t.equal(parsed.endpoints[1]!.authorizationValue as unknown, '[redacted]');
  t.equal(parsed.endpoints[2]!.clientSecret as unknown, '[redacted]');
  t.equal(config.endpoints[2]!.clientSecret?.reveal(), `${SECRET}-c`, 'reveal still gives the value');
  t.notOk(inspect(config.endpoints[0]!.clientSecret, { showHidden: true, depth: 10 }).includes('S3cr3t'), 'not with showHidden either');
});

t.test('loadConfigFile', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    [
      'server:',
      '  grpc:',
      '    port: 9002',
      'endpoints:',
      '  - name: as',
      `    url: ${URL_AS}`,
      '    clientId: authz',
      `    clientSecret: "${SECRET}"`,
      'policies:',
      '  - name: api',
      '    mappedIdentity: "{client_id}"',
      '',
    ].join('\n'),
  );
  const config = loadConfigFile(file, { env: {} });
  t.equal(config.server.grpc.port, 9002);
  t.equal(config.defaultPolicy, 'api');
  t.equal(config.policies[0]!.mappedIdentity.source, '{client_id}');
  t.equal(config.endpoints[0]!.clientSecret?.reveal(), SECRET);
  t.equal(loadConfigFile(file, { env: { GRPC_PORT: '9003' } }).server.grpc.port, 9003, 'env option applies');

  const broken = join(dir, 'broken.yaml');
  writeFileSync(broken, `endpoints:\n  - name: as\n    url: ${URL_AS}\n    bogus: 1\n`);
  t.match(errorOf(() => loadConfigFile(broken, { env: {} })).message, new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: endpoints\\[0\\]\\.bogus: unknown option$`), 'errors name the file');

  const missing = join(dir, 'missing.yaml');
  t.equal(errorOf(() => loadConfigFile(missing, { env: {} })).message, `cannot read configuration file ${missing}: ENOENT`);
});

t.test('a YAML warning is an error that quotes nothing, and is never emitted as a process warning', async (t) => {
  const emitted: unknown[] = [];
  const original = process.emitWarning;
  process.emitWarning = ((warning: unknown) => {
    emitted.push(warning);
  }) as typeof process.emitWarning;
  t.teardown(() => {
    process.emitWarning = original;
  });
  const text = `endpoints:\n  - name: as\n    url: ${URL_AS}\n    clientId: a\n    clientSecret: !${SECRET} x\n`;
  const error = errorOf(() => parseConfig(text, 'conf.yaml', { env: {} }));
  t.match(error.message, /^conf\.yaml: YAML syntax error at line 5, column \d+: /);
  t.notOk(error.message.includes(SECRET), 'no secret in the message');
  t.same(emitted, [], 'nothing went to process warnings (stderr)');
});

t.test('configWarnings: an authenticationTimeout that Envoy\'s declared timeout always cuts short', async (t) => {
  const endpoints = [
    { name: 'slow', url: 'https://as.example/introspect', authMethod: 'none', authenticationTimeout: 10_000 },
    { name: 'fits', url: 'https://as.example/introspect', authMethod: 'none', authenticationTimeout: 150 },
  ];
  const policies = [{ name: 'default', endpoint: 'slow' }];
  t.same(configWarnings(buildConfig({ endpoints, policies }, 'test', { env: {} })), [], 'envoyTimeout not declared: nothing to compare with');
  const warnings = configWarnings(buildConfig({ server: { envoyTimeout: 200 }, endpoints, policies }, 'test', { env: {} }));
  t.equal(warnings.length, 1, 'only the endpoint whose timeout is not below Envoy\'s');
  t.match(warnings[0], /^endpoints\[0\]\.authenticationTimeout \(10000 ms\) is not below server\.envoyTimeout \(200 ms\)/);
});

t.test('files: every secret, certificate and key file the configuration names, by key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authz-files-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const secret = file('secret', 'client-secret\n');
  const admin = file('admin', 'admin-token-0123456789\n');
  const key = file('key', 'k'.repeat(40));
  const config = buildConfig(
    {
      admin: { tokenFile: admin },
      redis: { url: 'redis://127.0.0.1:6379', keySecretFile: key },
      endpoints: [endpoint(), endpoint({ name: 'b', clientSecret: null, clientSecretFile: secret })],
      policies: [{ name: 'p', endpoint: 'as' }],
    },
    'test',
    { env: {} },
  );
  t.same(config.files, [
    { key: 'endpoints[1].clientSecretFile', path: secret },
    { key: 'admin.tokenFile', path: admin },
    { key: 'redis.keySecretFile', path: key },
  ]);
  t.same(buildConfig({ endpoints: [endpoint()] }, 'test', { env: {} }).files, [], 'none named: none watched');
});
