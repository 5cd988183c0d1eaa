/**
 * `introspection-authz check-config FILE`: the resolved configuration on
 * stdout with defaults filled in and secrets masked, or exit 2 with one line
 * naming the problem; and the rest of the command line (--help, unknown commands).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ensureBuilt, logLines, run, serving, within, type Proc, type Teardowns } from '../support/service-process.js';

t.before(ensureBuilt);

const dir = mkdtempSync(join(tmpdir(), 'authz-check-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function writeConfig(text: string): string {
  const path = join(dir, `config-${(files += 1)}.yaml`);
  writeFileSync(path, text);
  return path;
}

const secret = () => `s3cr3t-${randomBytes(12).toString('hex')}`;

/** Exit status, stdout and stderr of a finished run (generous bound: a loaded CI machine starts Node slowly). */
async function finished(proc: Proc) {
  const exit = await within(proc.exited, 20_000, 'exit');
  return { exit, stdout: proc.stdout(), stderr: proc.stderr() };
}

/** Run `check-config FILE` for every file, three at a time; results in order. */
async function checkAll(t: Teardowns, paths: string[]) {
  const results: Array<Awaited<ReturnType<typeof finished>>> = [];
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      results[i] = await finished(run(t, ['check-config', paths[i]!]));
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  return results;
}

t.test('a valid file: exit 0, the resolved configuration as JSON, secrets masked', async (t) => {
  const inline = secret();
  const fromFile = secret();
  const authorization = `Bearer ${secret()}`;
  const fromEnv = secret();
  const secretFile = join(dir, 'client-secret');
  writeFileSync(secretFile, `  ${fromFile}\n`);
  const path = writeConfig(`# only what differs from the defaults
server:
  shutdownTimeout: 2500
cache:
  maxCacheEntries: 50
defaultPolicy: orders
endpoints:
  - name: inline
    url: https://as.example/introspect
    issuer: https://as.example
    clientId: authz
    clientSecret: ${inline}
  - name: file
    url: https://as.example/introspect
    issuer: https://as.example
    authMethod: client_secret_post
    clientId: authz
    clientSecretFile: ${secretFile}
  - name: value
    url: https://as.example/introspect
    audience: orders
    authorizationValue: "${authorization}"
  - name: env
    url: https://as.example/introspect
    issuer: https://as.example
    clientId: authz
    clientSecretEnv: AS_SECRET
policies:
  - name: orders
    endpoint: inline
    mappedIdentity: "user:{sub|client_id}"
  - name: billing
    endpoint: value
`);
  const { exit, stdout, stderr } = await finished(run(t, ['check-config', path], { AS_SECRET: fromEnv }));
  t.same(exit, { code: 0, signal: null }, 'exit 0');
  t.equal(stderr, '', 'nothing on stderr');
  let printed: any;
  t.doesNotThrow(() => (printed = JSON.parse(stdout)), 'stdout is one JSON document');
  t.ok(stdout.endsWith('}\n'), 'ends with a newline');

  t.match(printed.server, {
    grpc: { host: '0.0.0.0', port: 9001 },
    ops: { host: '0.0.0.0', port: 9090 },
    shutdownTimeout: 2500,
    maxTokenLength: 8192,
  }, 'server: defaults filled in around the one given value');
  t.match(printed.log, { level: 'info', decisions: 'all', allowSampleRate: 1, identity: false }, 'log: all defaults');
  t.match(printed.cache, { maxCacheEntries: 50, validatedTokenTTL: 600 }, 'cache: validatedTokenTTL defaults to 600');
  t.equal(printed.policySelector, 'policy');
  t.equal(printed.defaultPolicy, 'orders');

  t.same(
    printed.endpoints.map((e: any) => [e.name, e.authMethod, e.clientSecret, e.authorizationValue]),
    [
      ['inline', 'client_secret_basic', '[redacted]', null],
      ['file', 'client_secret_post', '[redacted]', null],
      ['value', 'authorization_value', null, '[redacted]'],
      ['env', 'client_secret_basic', '[redacted]', null],
    ],
    'authMethod resolved; every secret printed as [redacted]',
  );
  t.match(printed.endpoints[0], {
    url: 'https://as.example/introspect',
    clientId: 'authz',
    tokenTypeHint: 'access_token',
    authenticationTimeout: 10000,
    maxConnections: 32,
    maxResponseBytes: 65536,
    clockSkew: 0,
    restricted: false,
  }, 'endpoint defaults filled in');

  t.match(printed.policies[0], {
    name: 'orders',
    endpoint: 'inline',
    realm: 'api',
    mappedIdentity: 'user:{sub|client_id}',
    identityHeader: 'x-auth-subject',
    headerPrefix: 'x-auth-',
    unreachableStatus: 401,
    badResponseStatus: 500,
  }, 'the policy with its mappedIdentity as its template string');
  t.equal(printed.policies[1].mappedIdentity, '{sub|username|client_id}', 'the default template printed as a string');

  for (const [what, value] of [
    ['inline clientSecret', inline],
    ['clientSecretFile content', fromFile],
    ['authorizationValue', authorization],
    ['authorizationValue token part', authorization.slice('Bearer '.length)],
    ['clientSecretEnv value', fromEnv],
  ] as const) {
    t.notOk(stdout.includes(value) || stderr.includes(value), `the ${what} is nowhere in the output`);
  }
});

t.test('an environment override shows in the resolved configuration', async (t) => {
  const path = writeConfig(`endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const { exit, stdout } = await finished(run(t, ['check-config', path], { GRPC_PORT: '7001', LOG_LEVEL: 'debug' }));
  t.same(exit, { code: 0, signal: null });
  const printed = JSON.parse(stdout);
  t.equal(printed.server.grpc.port, 7001, 'GRPC_PORT wins');
  t.equal(printed.log.level, 'debug', 'LOG_LEVEL wins');
  t.equal(printed.server.ops.port, 9090, 'OPS_PORT of the test run was not passed on');
  t.same(printed.policies.map((p: any) => [p.name, p.endpoint]), [['default', 'as']], 'the implicit default policy');
});

t.test('invalid files: exit 2, one stderr line naming the key, nothing on stdout, no secret', async (t) => {
  const leaked = secret();
  const secretDir = join(dir, 'secret-dir');
  mkdirSync(secretDir);
  const cases: Array<{ name: string; file: string; key: RegExp }> = [
    {
      name: 'an unknown top-level key',
      file: writeConfig(`bogusOption: true
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`),
      key: /bogusOption: unknown option/,
    },
    {
      name: 'a misspelt key in an endpoint, next to a secret',
      file: writeConfig(`endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    clientId: me
    clientSecert: ${leaked}
`),
      key: /endpoints\[0\]\.clientSecert: unknown option/,
    },
    {
      name: 'a wrong type',
      file: writeConfig(`cache:
  validatedTokenTTL: "10 minutes"
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`),
      key: /cache\.validatedTokenTTL: must be a number/,
    },
    {
      name: 'a YAML syntax error',
      file: writeConfig(`endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authorizationValue: "Bearer ${leaked}
`),
      key: /YAML syntax error at line \d+, column \d+/,
    },
    {
      name: 'a missing file',
      file: join(dir, 'no-such-file.yaml'),
      key: /cannot read configuration file .*no-such-file\.yaml: ENOENT/,
    },
    {
      name: 'a clientSecretFile that is a directory',
      file: writeConfig(`endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    clientId: me
    clientSecretFile: ${secretDir}
`),
      key: /endpoints\[0\]\.clientSecretFile: cannot read .*secret-dir: EISDIR/,
    },
    {
      name: 'a clientSecretFile that does not exist',
      file: writeConfig(`endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    clientId: me
    clientSecretFile: ${join(dir, 'no-such-secret')}
`),
      key: /endpoints\[0\]\.clientSecretFile: cannot read .*no-such-secret: ENOENT/,
    },
  ];
  const results = await checkAll(t, cases.map((c) => c.file));
  for (const [i, c] of cases.entries()) {
    const { exit, stdout, stderr } = results[i]!;
    const lines = stderr.trimEnd().split('\n');
    t.same(exit, { code: 2, signal: null }, `${c.name}: exit 2`);
    t.equal(lines.length, 1, `${c.name}: one stderr line (${lines.join(' | ')})`);
    t.match(lines[0], c.key, `${c.name}: names the key and the problem`);
    t.match(lines[0], /^error: /, `${c.name}: an error line`);
    t.equal(stdout, '', `${c.name}: nothing on stdout`);
    t.notOk(stderr.includes(leaked), `${c.name}: no secret in the message`);
  }
});

t.test('check-config without a file', async (t) => {
  const path = writeConfig(`endpoints:
  - name: from-env
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const [none, fromEnv, two] = await Promise.all([
    finished(run(t, ['check-config'])),
    finished(run(t, ['check-config'], { CONFIG_FILE: path })),
    finished(run(t, ['check-config', path, path])),
  ]);
  t.same(none.exit, { code: 2, signal: null }, 'no file and no CONFIG_FILE: exit 2');
  t.match(none.stderr, /^error: no configuration file: give --config FILE or set CONFIG_FILE\n$/, 'says so on one line');
  t.equal(none.stdout, '', 'nothing on stdout');

  t.same(fromEnv.exit, { code: 0, signal: null }, 'CONFIG_FILE is used when no file is given');
  t.equal(JSON.parse(fromEnv.stdout).endpoints[0].name, 'from-env', 'and it is the file printed');

  t.same(two.exit, { code: 2, signal: null }, 'two files: exit 2');
  t.match(two.stderr, /^error: check-config takes one file\n/, 'says so first');
});

t.test('--help mentions check-config; an unknown command or option exits 2', async (t) => {
  const [help, unknown, option] = await Promise.all([
    finished(run(t, ['--help'])),
    finished(run(t, ['chek-config', 'x.yaml'])),
    finished(run(t, ['--frobnicate'])),
  ]);
  t.same(help.exit, { code: 0, signal: null }, '--help: exit 0');
  t.match(help.stdout, /^\s+introspection-authz check-config FILE\s+\S/m, '--help has a check-config line');
  t.match(help.stdout, /^\s+--skip-secrets\s+\S/m, '--help explains --skip-secrets');
  t.equal(help.stderr, '');

  t.same(unknown.exit, { code: 2, signal: null }, 'unknown command: exit 2');
  t.match(unknown.stderr, /^error: unknown command "chek-config"\n/, 'names the command first');
  t.match(unknown.stderr, /check-config FILE/, 'and shows the usage');
  t.equal(unknown.stdout, '', 'nothing on stdout');

  t.same(option.exit, { code: 2, signal: null }, 'unknown option: exit 2');
  t.match(option.stderr, /^error: .*--frobnicate/, 'names the option');
});

t.test('server.workers: 1 by default, WORKERS overrides it, 1 to 64 only', async (t) => {
  const path = (workers: string) =>
    writeConfig(`server:
${workers}endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const plain = path('');
  const [byDefault, fromFile, fromEnv, zero, tooMany, notNumber, envTooMany] = await Promise.all([
    finished(run(t, ['check-config', plain])),
    finished(run(t, ['check-config', path('  workers: 4\n')])),
    finished(run(t, ['check-config', path('  workers: 4\n')], { WORKERS: '8' })),
    finished(run(t, ['check-config', path('  workers: 0\n')])),
    finished(run(t, ['check-config', path('  workers: 65\n')])),
    finished(run(t, ['check-config', path('  workers: "4"\n')])),
    finished(run(t, ['check-config', plain], { WORKERS: '99' })),
  ]);
  t.equal(JSON.parse(byDefault.stdout).server.workers, 1, 'default 1: one process');
  t.equal(JSON.parse(fromFile.stdout).server.workers, 4, 'from the file');
  t.equal(JSON.parse(fromEnv.stdout).server.workers, 8, 'WORKERS wins');
  for (const [what, result, line] of [
    ['0', zero, /server\.workers: must be a whole number from 1 to 64/],
    ['65', tooMany, /server\.workers: must be a whole number from 1 to 64/],
    ['a string', notNumber, /server\.workers: must be a number/],
    ['WORKERS=99', envTooMany, /server\.workers \(from WORKERS\): must be a whole number from 1 to 64/],
  ] as const) {
    t.same(result.exit, { code: 2, signal: null }, `${what}: exit 2`);
    t.match(result.stderr, line, `${what}: names server.workers`);
  }
});

t.test('warnings: on stderr as "warning: ..." lines naming the key, stdout still the JSON, exit 0', async (t) => {
  const clientSecret = secret();
  const path = writeConfig(`endpoints:
  - name: remote
    url: http://as.example/introspect
    allowInsecure: true
    clientId: authz
    clientSecret: ${clientSecret}
policies:
  - name: orders
    match:
      - { host: "*.shop.example.com" }
  - name: admin
    match:
      - { pathPrefix: /admin }
defaultPolicy: orders
`);
  const { exit, stdout, stderr } = await finished(run(t, ['check-config', path]));
  t.same(exit, { code: 0, signal: null }, 'a warning never fails the check');
  t.doesNotThrow(() => JSON.parse(stdout), 'stdout is still one JSON document');
  const lines = stderr.trimEnd().split('\n');
  t.equal(lines.length, 3, stderr);
  t.ok(lines.every((line) => line.startsWith(`warning: ${path}: `)), 'each line a warning naming the file');
  t.match(stderr, /endpoints\[0\]\.url: http \(allowed by allowInsecure\)/);
  t.match(stderr, /endpoints\[0\]: neither issuer nor audience is set/);
  t.match(stderr, /policies\[1\]\.match\[0\]: does not apply on host \*\.shop\.example\.com/);
  t.notMatch(stderr, clientSecret, 'no value in a warning');
});

t.test('the service logs the same warnings at start-up, and serves', async (t) => {
  const path = writeConfig(`server:
  grpc: { host: 127.0.0.1, port: 0 }
  ops: { host: 127.0.0.1, port: 0 }
endpoints:
  - name: local
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const proc = run(t, ['--config', path]);
  await serving(proc);
  const warnings = logLines(proc.stdout()).filter((line) => line.msg === 'risky configuration');
  t.same(
    warnings.map((line) => [line.level, line.warning]),
    [['warn', `${path}: endpoints[0]: neither issuer nor audience is set: a token this endpoint calls active is accepted whoever it was issued to or by`]],
  );
  proc.child.kill('SIGTERM');
  t.same(await within(proc.exited, 20_000, 'exit'), { code: 0, signal: null }, 'a warning changes no exit code');
});

t.test('--skip-secrets: secret files and variables are not read, everything else is checked', async (t) => {
  const missing = join(dir, 'not-mounted-here');
  const base = `admin:
  tokenFile: ${missing}/admin-token
redis:
  url: redis://127.0.0.1:6379
  passwordFile: ${missing}/redis-password
  keySecretFile: ${missing}/redis-key
endpoints:
  - name: file
    url: https://as.example/introspect
    clientId: authz
    clientSecretFile: ${missing}/client-secret
  - name: env
    url: https://as.example/introspect
    clientId: authz
    clientSecretEnv: NOT_SET_ANYWHERE
  - name: bearer
    url: https://as.example/introspect
    authorizationValueFile: ${missing}/authorization
policies:
  - name: default
    endpoint: file
`;
  const path = writeConfig(base);
  const [plain, skipped, broken, both, notCheckConfig] = await Promise.all([
    finished(run(t, ['check-config', path])),
    finished(run(t, ['check-config', '--skip-secrets', path])),
    finished(run(t, ['check-config', '--skip-secrets', writeConfig(base.replace('clientId: authz', 'clientld: authz'))])),
    finished(run(t, ['check-config', '--skip-secrets', writeConfig(base.replace('clientSecretEnv: NOT_SET_ANYWHERE', 'clientSecretEnv: NOT_SET_ANYWHERE\n    clientSecret: inline-too'))])),
    finished(run(t, ['--skip-secrets', '--config', path])),
  ]);
  t.same(plain.exit, { code: 2, signal: null }, 'without it: exit 2');
  t.match(plain.stderr, /endpoints\[0\]\.clientSecretFile: cannot read .*client-secret: ENOENT/, 'the first missing file is named');

  t.same(skipped.exit, { code: 0, signal: null }, `with it: exit 0 (${skipped.stderr.trim()})`);
  const printed = JSON.parse(skipped.stdout);
  t.same(
    printed.endpoints.map((e: any) => [e.name, e.authMethod, e.clientSecret ?? e.authorizationValue]),
    [
      ['file', 'client_secret_basic', '[redacted]'],
      ['env', 'client_secret_basic', '[redacted]'],
      ['bearer', 'authorization_value', '[redacted]'],
    ],
    'each unread secret still counts as given, so authMethod resolves as in the pod',
  );
  t.equal(printed.admin.token, '[redacted]', 'admin token');
  t.match(printed.redis, { password: '[redacted]', keySecret: '[redacted]' }, 'redis secrets');

  t.same(broken.exit, { code: 2, signal: null }, 'a misspelt key is still an error');
  t.match(broken.stderr, /endpoints\[0\]\.clientld: unknown option/);
  t.same(both.exit, { code: 2, signal: null }, 'a secret given twice is still an error');
  t.match(both.stderr, /endpoints\[1\]\.clientSecret: give it inline, as a file or as an environment variable, not several/);

  t.same(notCheckConfig.exit, { code: 2, signal: null }, 'outside check-config: exit 2, the service never runs without its secrets');
  t.match(notCheckConfig.stderr, /^error: --skip-secrets is an option of check-config/);
});

t.test('an invalid environment override names its variable', async (t) => {
  const path = writeConfig(`endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const [level, port, workers] = await Promise.all([
    finished(run(t, ['check-config', path], { LOG_LEVEL: 'loud' })),
    finished(run(t, ['check-config', path], { GRPC_PORT: 'ninety' })),
    finished(run(t, ['check-config', path], { WORKERS: '99' })),
  ]);
  for (const [what, result, line] of [
    ['LOG_LEVEL=loud', level, /^error: .*: log\.level \(from LOG_LEVEL\): must be one of /],
    ['GRPC_PORT=ninety', port, /^error: .*: server\.grpc\.port \(from GRPC_PORT\): must be a whole number/],
    ['WORKERS=99', workers, /^error: .*: server\.workers \(from WORKERS\): must be a whole number from 1 to 64/],
  ] as const) {
    t.same(result.exit, { code: 2, signal: null }, `${what}: exit 2`);
    t.match(result.stderr, line, `${what}: names the key and the variable`);
  }
});
