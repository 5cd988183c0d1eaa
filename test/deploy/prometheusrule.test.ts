// deploy/kubernetes/base/prometheusrule.yaml: every metric an alert reads is
// one the service exports (read from its own registries), the latency alert
// sits below the proxies' timeout, and, where promtool is installed (CI
// installs Debian's prometheus package), promtool checks the rules and runs
// their unit tests (test/deploy/prometheus-rules.promtool.yaml).
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { Metrics } from '../../src/observability/metrics.js';
import { PrimaryMetrics } from '../../src/observability/cluster-metrics.js';
import { DEPLOY } from './lib/files.js';
import { readYamlDocuments } from './lib/kubernetes.js';

const [rule] = readYamlDocuments(join(DEPLOY, 'kubernetes', 'base', 'prometheusrule.yaml')) as any[];
const alerts = (rule.spec.groups as any[]).flatMap((g) => g.rules as Array<{ alert: string; expr: string }>);

/** Every series name the service can expose: the workers' (or single process's) registry and a primary's. */
async function exported(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const registry of [new Metrics({ cacheEntries: () => 0 }).registry, new PrimaryMetrics({ serving: () => 0 }).registry]) {
    for (const metric of await registry.getMetricsAsJSON()) {
      names.add(metric.name);
      if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
    }
  }
  return names;
}

/** PromQL words that are not metric names. */
const PROMQL = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset',
  'rate', 'irate', 'increase', 'delta', 'histogram_quantile', 'absent', 'absent_over_time', 'changes', 'resets', 'time', 'vector', 'scalar',
  'max_over_time', 'min_over_time', 'avg_over_time', 'sum_over_time', 'clamp_min', 'clamp_max', 'topk', 'bottomk', 'label_replace',
]);

/** Metric names an expression selects: identifiers outside label matchers, grouping lists, strings and ranges. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const words = bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  return [...new Set(words.filter((w) => !PROMQL.has(w) && !/^(e|inf|nan)$/i.test(w)))];
}

t.test('the expression reader', async (t) => {
  t.same(metricNames('sum by (policy) (rate(a_total{x="y", z=~"p|q"}[5m])) / sum(rate(b_total[5m])) > 0.05'), ['a_total', 'b_total']);
  t.same(metricNames('histogram_quantile(0.99, sum by (le) (rate(c_bucket[5m]))) > 0.8'), ['c_bucket']);
  t.same(metricNames('max by (endpoint) (d) == 2'), ['d']);
});

t.test('every metric an alert reads is one the service exports', async (t) => {
  const names = await exported();
  t.ok(names.has('authz_check_decisions_total') && names.has('authz_worker_restarts_total'), 'both registries were read');
  t.ok(alerts.length >= 5, `${alerts.length} alerts`);
  for (const { alert, expr } of alerts) {
    const used = metricNames(expr);
    t.ok(used.length > 0, `${alert} reads a metric`);
    for (const name of used) t.ok(names.has(name), `${alert}: ${name} is exported`);
  }
  // The reader is not blind: a misspelt name is caught.
  t.notOk(names.has(metricNames('rate(authz_check_decision_total[5m])')[0]!), 'a misspelt metric would fail');
});

t.test('the alerts an on-call person needs are there', async (t) => {
  const byName = new Map(alerts.map((a) => [a.alert, a.expr]));
  t.match(byName.get('AuthzFailClosedDenies'), /authz_check_decisions_total\{decision="deny", reason=~"introspection_error\|bad_response"\}/, 'fail-closed denies');
  t.match(byName.get('AuthzIntrospectionCircuitOpen'), /authz_introspection_circuit_state\) == 2/, 'circuit open');
  t.match(byName.get('AuthzCheckLatencyNearTimeout'), /histogram_quantile\(0\.99, .*authz_check_duration_seconds_bucket/, 'p99 Check latency');
  t.match(byName.get('AuthzConfigReloadFailed'), /authz_config_reloads_total\{result="failure"\}/, 'reload failures');
});

t.test('the latency alert fires before the proxies time out, not on every blip', async (t) => {
  const envoy = YAML.parse(readFileSync(join(DEPLOY, 'envoy', 'envoy.yaml'), 'utf8'));
  const filters = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters as any[];
  const timeout = filters.find((f) => f.name === 'envoy.filters.http.ext_authz').typed_config.grpc_service.timeout as string;
  const seconds = Number(/^([\d.]+)s$/.exec(timeout)![1]);
  const threshold = Number(/> ([\d.]+)\s*$/.exec(alerts.find((a) => a.alert === 'AuthzCheckLatencyNearTimeout')!.expr)![1]);
  t.ok(threshold < seconds, `p99 threshold ${threshold} s is below Envoy's ${timeout}`);
  t.ok(threshold >= seconds / 2, 'and not so low that a normal slow moment pages');
});

const PROMTOOL = spawnSync('promtool', ['--version'], { encoding: 'utf8', timeout: 10_000 });
const NO_PROMTOOL = PROMTOOL.error || PROMTOOL.status !== 0 ? 'promtool is not installed (apt-get install prometheus; .ci/run does)' : false;

t.test('promtool: the rules check and their unit tests pass', { skip: NO_PROMTOOL }, async (t) => {
  const dir = t.testdir({});
  writeFileSync(join(dir, 'rules.yaml'), YAML.stringify({ groups: rule.spec.groups }));
  copyFileSync(new URL('./prometheus-rules.promtool.yaml', import.meta.url), join(dir, 'tests.yaml'));
  const check = spawnSync('promtool', ['check', 'rules', 'rules.yaml'], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  t.equal(check.status, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
  const run = spawnSync('promtool', ['test', 'rules', 'tests.yaml'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  t.equal(run.status, 0, `promtool test rules: ${run.stdout}${run.stderr}`);
  // Every alert is exercised by the unit tests.
  const tests = YAML.parse(readFileSync(join(dir, 'tests.yaml'), 'utf8')) as { tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
  const fired = new Set(tests.tests.flatMap((c) => c.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
  for (const { alert } of alerts) t.ok(fired.has(alert), `${alert} has a unit test where it fires`);
});
