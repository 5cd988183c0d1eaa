// The redis.* options: off by default, a URL and a key secret turn the shared
// tier on, secrets from files, and every error names its key without quoting a value.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, ConfigError } from '../../src/config/load.js';

const endpoints = [{ name: 'as', url: 'http://127.0.0.1:1/introspect', authMethod: 'none' }];
const SECRET = 'a-key-secret-of-at-least-32-bytes-0123';
const build = (redis: Record<string, unknown> | undefined) =>
  buildConfig({ endpoints, ...(redis ? { redis } : {}) }, 'test.yaml', { env: {} });
const errorOf = (redis: Record<string, unknown>): string => {
  try {
    build(redis);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return 'no error';
};

t.test('off by default', async (t) => {
  t.equal(build(undefined).redis, null);
  t.equal(build({ keyPrefix: 'x:', timeout: 50 }).redis, null, 'tuning alone does not turn it on');
});

t.test('on with a URL and a key secret, secrets from files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authz-redis-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'key'), `${SECRET}\n`);
  writeFileSync(join(dir, 'password'), 'pw-from-file\n');
  const redis = build({
    url: 'rediss://redis.example:6380/2',
    username: 'authz',
    passwordFile: join(dir, 'password'),
    keySecretFile: join(dir, 'key'),
  }).redis!;
  t.equal(redis.url, 'rediss://redis.example:6380/2');
  t.equal(redis.username, 'authz');
  t.equal(redis.password?.reveal(), 'pw-from-file');
  t.equal(redis.keySecret.reveal(), SECRET);
  t.equal(redis.keyPrefix, 'authz:');
  t.equal(redis.timeout, 20);
  t.notMatch(JSON.stringify(redis), /pw-from-file|key-secret/, 'secrets are redacted');
  t.equal(build({ url: 'redis://127.0.0.1:6379', keySecret: SECRET }).redis?.password, null);
});

t.test('errors name the key', async (t) => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ url: 'http://x' }, 'redis.url: must use redis or rediss (TLS)'],
    [{ url: 'not a url' }, 'redis.url: must be a redis:// or rediss:// URL'],
    [{ url: 'redis://u:p@x', keySecret: SECRET }, 'redis.url: must not carry credentials: use username and passwordFile'],
    [{ url: 'redis://x?tls=1', keySecret: SECRET }, 'redis.url: must not have a query or a fragment'],
    [{ url: 'redis://x' }, 'redis.keySecret: required with a shared tier (or keySecretFile)'],
    [{ url: 'redis://x', keySecret: 'short-secret' }, 'redis.keySecret: must be at least 32 bytes'],
    [{ url: 'redis://x', keySecret: SECRET, keySecretFile: '/nope' }, 'redis.keySecret: give it inline, as a file or as an environment variable, not several'],
    [{ url: 'redis://x', keySecretFile: '/nonexistent/key' }, 'redis.keySecretFile: cannot read /nonexistent/key: ENOENT'],
    [{ keySecret: SECRET }, 'redis.keySecret: has no effect without redis.url, redis.sentinels or redis.clusterNodes'],
    [{ url: 'redis://x', keySecret: SECRET, timeout: 0 }, 'redis.timeout: must be a whole number from 1 to 1000'],
    [{ url: 'redis://x', keySecret: SECRET, keyPrefix: 'has space' }, 'redis.keyPrefix: must be at most 64 printable characters without spaces'],
    [{ sentinel: true }, 'redis.sentinel: unknown option'],
  ];
  for (const [redis, message] of cases) t.equal(errorOf(redis), `test.yaml: ${message}`, message);
  t.notMatch(errorOf({ url: 'redis://x', keySecret: 'short-secret' }), /short-secret/, 'never quoted');
});

t.test('the configuration in deploy/redis/README.md is valid', async (t) => {
  const { readFileSync } = await import('node:fs');
  const YAML = (await import('yaml')).default;
  const text = readFileSync(new URL('../../deploy/redis/README.md', import.meta.url), 'utf8');
  const block = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/^ {3}/gm, '')).find((b) => b.startsWith('redis:'));
  t.ok(block, 'has a redis: block');
  const redis = (YAML.parse(block!) as { redis: Record<string, unknown> }).redis;
  const dir = mkdtempSync(join(tmpdir(), 'authz-redis-doc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'key-secret'), SECRET);
  writeFileSync(join(dir, 'password'), 'pw');
  const config = build({ ...redis, passwordFile: join(dir, 'password'), keySecretFile: join(dir, 'key-secret') }).redis!;
  t.equal(config.url, redis.url);
  t.equal(config.keyPrefix, 'authz:');
});

t.test('Sentinel and Cluster: nodes as host:port, exactly one of url, sentinels and clusterNodes', async (t) => {
  const sentinel = build({ sentinels: ['sentinel-0:26379', '[::1]:26380'], masterName: 'mymaster', keySecret: SECRET }).redis!;
  t.same(sentinel.sentinel, { nodes: [{ host: 'sentinel-0', port: 26379 }, { host: '::1', port: 26380 }], masterName: 'mymaster' });
  t.equal(sentinel.url, null);
  t.equal(sentinel.cluster, null);
  const cluster = build({ clusterNodes: ['10.0.0.1:7000', 'redis-1:7001'], keySecret: SECRET }).redis!;
  t.same(cluster.cluster, { nodes: [{ host: '10.0.0.1', port: 7000 }, { host: 'redis-1', port: 7001 }] });
  t.equal(cluster.sentinel, null);

  t.match(errorOf({ url: 'redis://r:6379', clusterNodes: ['a:1'], keySecret: SECRET }), /redis\.url: give one of url, sentinels and clusterNodes/);
  t.match(errorOf({ sentinels: ['a:1'], clusterNodes: ['b:2'], masterName: 'm', keySecret: SECRET }), /redis\.sentinels: give one of/);
  t.match(errorOf({ sentinels: ['a:1'], keySecret: SECRET }), /redis\.masterName: required with sentinels/);
  t.match(errorOf({ url: 'redis://r:6379', masterName: 'm', keySecret: SECRET }), /redis\.masterName: only used with sentinels/);
  t.match(errorOf({ masterName: 'm' }), /redis\.masterName: has no effect without/);
  t.match(errorOf({ clusterNodes: ['a:1'] }), /redis\.keySecret: required/);
  for (const bad of ['a', 'a:', 'a:0', 'a:65536', ':1', 'a b:1', 'redis://a:1']) {
    t.match(errorOf({ clusterNodes: [bad], keySecret: SECRET }), /redis\.clusterNodes\[0\]: must be host:port/, bad);
  }
  t.match(errorOf({ sentinels: ['ok:1', 'nope'], masterName: 'm', keySecret: SECRET }), /redis\.sentinels\[1\]: must be host:port/);
});
