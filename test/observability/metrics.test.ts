import t from 'tap';
import { Metrics } from '../../src/observability/metrics.js';

const metricsOf = () => new Metrics({ cacheEntries: () => 0 });

async function sample(metrics: Metrics, name: string): Promise<Map<string, number>> {
  const found = (await metrics.registry.getMetricsAsJSON()).find((metric) => metric.name === name);
  return new Map(
    (found?.values ?? []).map((value) => [
      Object.entries(value.labels)
        .map(([key, label]) => `${key}=${label}`)
        .join(','),
      value.value,
    ]),
  );
}

t.test('endpoint calls: counted against labels bound once, handed to prom-client when read', async (t) => {
  const metrics = metricsOf();
  let incs = 0;
  const inc = metrics.introspections.inc.bind(metrics.introspections);
  metrics.introspections.inc = ((...args: Parameters<typeof inc>) => {
    incs += 1;
    return inc(...args);
  }) as typeof inc;
  const idp = metrics.endpoint('idp');
  t.equal(metrics.endpoint('idp'), idp, 'one object per endpoint name');
  for (let i = 0; i < 100; i += 1) {
    idp.started();
    idp.finished(i % 4 === 0 ? 'inactive' : 'active', 0.002);
    idp.ended();
  }
  metrics.recordIntrospection('other', 'circuit_open', 0);
  t.equal(incs, 0, 'no prom-client call per introspection');
  t.same(
    await sample(metrics, 'authz_introspection_requests_total'),
    new Map([
      ['endpoint=idp,outcome=active', 75],
      ['endpoint=idp,outcome=inactive', 25],
      ['endpoint=other,outcome=circuit_open', 1],
    ]),
  );
  t.equal(incs, 3, 'one per label set read');
  t.same((await sample(metrics, 'authz_introspection_requests_total')).get('endpoint=idp,outcome=active'), 75, 'a second read adds nothing');
  const durations = (await metrics.registry.getMetricsAsJSON()).find((metric) => metric.name === 'authz_introspection_duration_seconds');
  const counts = (durations!.values as Array<{ metricName?: string; labels: Record<string, unknown>; value: number }>).filter(
    (value) => value.metricName === 'authz_introspection_duration_seconds_count',
  );
  t.same(
    counts.map((value) => [value.labels.endpoint, value.value]),
    [['idp', 100]],
    'calls timed, none refused by an open circuit',
  );
});

t.test('the in-flight gauge reads the calls under way when scraped', async (t) => {
  const metrics = metricsOf();
  const idp = metrics.endpoint('idp');
  idp.started();
  idp.started();
  t.equal((await sample(metrics, 'authz_introspection_in_flight')).get('endpoint=idp'), 2);
  idp.finished('active', 0.001);
  idp.ended();
  idp.ended();
  t.equal((await sample(metrics, 'authz_introspection_in_flight')).get('endpoint=idp'), 0);
});

t.test('shared-tier lookups: tallied, and skipped ones not timed', async (t) => {
  const metrics = metricsOf();
  for (const result of ['hit', 'hit', 'miss', 'skipped']) metrics.recordSharedLookup(result, 0.001);
  const lookups = await sample(metrics, 'authz_shared_cache_lookups_total');
  t.equal(lookups.get('result=hit'), 2);
  t.equal(lookups.get('result=miss'), 1);
  t.equal(lookups.get('result=skipped'), 1);
  const duration = (await metrics.registry.getMetricsAsJSON()).find((metric) => metric.name === 'authz_shared_cache_lookup_duration_seconds');
  const values = duration!.values as Array<{ metricName?: string; value: number }>;
  t.equal(values.find((value) => value.metricName === 'authz_shared_cache_lookup_duration_seconds_count')?.value, 3);
});

t.test('decisions: by transport, and a dry run\'s would-be deny apart from a real deny of the same reason', async (t) => {
  const metrics = metricsOf();
  const deny = { allow: false, reason: 'inactive', policy: 'p', status: 401, challenge: null, bearerError: null, description: 'x', endpoint: null, cache: 'none' } as const;
  const wouldDeny = {
    allow: true,
    reason: 'dry_run',
    policy: 'p',
    identity: null,
    headers: [],
    removeHeaders: [],
    metadata: {},
    endpoint: null,
    cache: 'none',
    wouldDeny: { reason: 'inactive', status: 401 },
  } as const;
  metrics.recordDecision(deny, 0.001);
  metrics.recordDecision(deny, 0.001, 'http');
  metrics.recordDecision(deny, 0.001, 'http');
  metrics.recordDecision(wouldDeny, 0.001);
  t.same(
    await sample(metrics, 'authz_check_decisions_total'),
    new Map([
      ['decision=deny,reason=inactive,policy=p,transport=grpc', 1],
      ['decision=would_deny,reason=inactive,policy=p,transport=grpc', 1],
      ['decision=deny,reason=inactive,policy=p,transport=http', 2],
    ]),
  );
});
