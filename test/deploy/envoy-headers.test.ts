// deploy/envoy/envoy.yaml's ext_authz allowed_headers against the shipped
// configurations: every header a shipped policy or endpoint reads, and every
// spelling of the headers a policy owns (whose forged copies the service has
// Envoy strip, so it must see them), reaches the Check; what no policy reads
// (cookies) does not. The ext_authz cluster's circuit breakers are chosen.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { DEPLOY, fromRepo, serviceConfigs } from './lib/files.js';

const envoy = YAML.parse(readFileSync(join(DEPLOY, 'envoy', 'envoy.yaml'), 'utf8')) as any;
const filters = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters as any[];
const extAuthz = filters.find((f) => f.name === 'envoy.filters.http.ext_authz').typed_config;
const patterns = (extAuthz.allowed_headers?.patterns ?? []) as Array<Record<string, any>>;

/** Envoy's StringMatcher on a (lower-cased) header name. */
function matches(pattern: Record<string, any>, name: string): boolean {
  const subject = pattern.ignore_case ? name.toLowerCase() : name;
  const text = (v: string) => (pattern.ignore_case ? v.toLowerCase() : v);
  if ('exact' in pattern) return subject === text(pattern.exact);
  if ('prefix' in pattern) return subject.startsWith(text(pattern.prefix));
  if ('suffix' in pattern) return subject.endsWith(text(pattern.suffix));
  if ('contains' in pattern) return subject.includes(text(pattern.contains));
  // RE2 matches the whole name; these patterns use no syntax where RE2 and JavaScript differ.
  if ('safe_regex' in pattern) return new RegExp(`^(?:${pattern.safe_regex.regex})$`).test(subject);
  throw new Error(`unknown StringMatcher ${JSON.stringify(pattern)}`);
}
const allowed = (name: string) => patterns.some((p) => matches(p, name));

/** A name with each of its "-" swapped for "_" in turn, plus all of them: the spellings spoofedHeaders strips. */
function spellings(name: string): string[] {
  const out = new Set([name, name.replaceAll('-', '_')]);
  for (let i = name.indexOf('-'); i >= 0; i = name.indexOf('-', i + 1)) out.add(`${name.slice(0, i)}_${name.slice(i + 1)}`);
  return [...out];
}

const configs = serviceConfigs().map((path) => ({ path, config: parseConfig(readFileSync(path, 'utf8'), fromRepo(path), { env: {}, skipSecrets: true }) }));

t.test('allowed_headers is set: the Check carries a chosen list, not every header', async (t) => {
  t.ok(patterns.length > 0, 'a list of patterns');
  for (const name of ['cookie', 'x-forwarded-for', 'user-agent', 'x-api-key', 'proxy-authorization']) t.notOk(allowed(name), `${name} is not sent`);
});

t.test('every header the service reads is sent', async (t) => {
  for (const name of ['authorization', 'x-request-id', 'traceparent', 'tracestate']) t.ok(allowed(name), name);
});

for (const { path, config } of configs) {
  t.test(`${fromRepo(path)}: every header its policies and endpoints read or own is sent`, async (t) => {
    for (const endpoint of config.endpoints) {
      if (endpoint.clientIdHeader) t.ok(allowed(endpoint.clientIdHeader), `endpoint ${endpoint.name}: clientIdHeader ${endpoint.clientIdHeader}`);
    }
    for (const policy of config.policies) {
      const owned = [policy.identityHeader, `${policy.headerPrefix}subject`, `${policy.headerPrefix}client-id`, `${policy.headerPrefix}status`];
      if (policy.attributesHeader) owned.push(policy.attributesHeader);
      for (const name of owned) {
        for (const spelling of spellings(name)) t.ok(allowed(spelling), `policy ${policy.name}: ${spelling}`);
      }
    }
  });
}

t.test('the reader is not blind: a header outside the list is refused', async (t) => {
  t.notOk(allowed('x-authz-subject'), 'a different prefix');
  t.notOk(matches({ safe_regex: { regex: 'x[-_]auth[-_].*' } }, 'xx-auth-subject'), 'the regex matches whole names');
  t.throws(() => matches({ glob: '*' }, 'a'));
});

t.test('the ext_authz cluster has chosen circuit breakers, below Envoy\'s default 1,024 requests', async (t) => {
  const cluster = envoy.static_resources.clusters.find((c: any) => c.name === extAuthz.grpc_service.envoy_grpc.cluster_name);
  const thresholds = cluster.circuit_breakers?.thresholds as any[] | undefined;
  t.ok(thresholds?.length, 'thresholds are set');
  const normal = thresholds?.find((th) => (th.priority ?? 'DEFAULT') === 'DEFAULT');
  t.ok(normal, 'for the default priority');
  t.ok(normal.max_requests > 0 && normal.max_requests < 1024, `max_requests ${normal.max_requests}`);
  const timeout = Number(/^([\d.]+)s$/.exec(extAuthz.grpc_service.timeout)![1]);
  t.ok(normal.max_requests / timeout >= 500, `${normal.max_requests / timeout} Checks/s fit while each waits the full ${timeout} s`);
  t.ok(normal.max_pending_requests > 0 && normal.max_pending_requests < normal.max_requests, 'few wait for a connection');
  t.equal(normal.track_remaining, true, 'remaining capacity is published');
});
