/**
 * Metrics of a cluster's primary, and /metrics for the whole service: the
 * workers' registries (sent as prom-client JSON) and the primary's, merged by
 * prom-client's aggregation. Service metrics add up over workers (counters,
 * histogram buckets, cache entries) unless the metric says otherwise (its
 * `aggregator`: circuit state and build info take the max, the configuration
 * timestamp the min). Process metrics (`process_*`, `nodejs_*`) would mean
 * nothing added up, so each process keeps its own, labelled `worker` (its slot,
 * 1..workers, or "primary"): the label set stays the same across restarts.
 */
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { MetricsJson } from '../cluster/protocol.js';
import { SERVICE_COUNTERS } from './metrics.js';

export class PrimaryMetrics {
  readonly registry = new Registry();
  readonly configReloads = new Counter({ ...SERVICE_COUNTERS.configReloads, registers: [this.registry] });
  readonly secretReloads = new Counter({ ...SERVICE_COUNTERS.secretReloads, registers: [this.registry] });
  readonly adminEvictions = new Counter({ ...SERVICE_COUNTERS.adminEvictions, registers: [this.registry] });
  readonly opsConnectionsRefused = new Counter({ ...SERVICE_COUNTERS.opsConnectionsRefused, registers: [this.registry] });
  readonly workerRestarts = new Counter({
    name: 'authz_worker_restarts_total',
    help: 'Worker processes started again after one died unexpectedly.',
    registers: [this.registry],
  });

  constructor(options: { serving(): number }) {
    new Gauge({
      name: 'authz_workers_serving',
      help: 'Worker processes answering Checks; /readyz is ready only when it equals server.workers.',
      registers: [this.registry],
      collect() {
        this.set(options.serving());
      },
    });
    for (const result of ['success', 'failure']) this.configReloads.inc({ result }, 0);
    for (const result of ['success', 'failure']) this.secretReloads.inc({ result }, 0);
    for (const scope of ['token', 'all']) this.adminEvictions.inc({ scope }, 0);
    collectDefaultMetrics({ register: this.registry });
  }
}

const PER_PROCESS = /^(process|nodejs)_/;

/** The exposition text of the processes' metrics together (see the top of this file). */
export function aggregateMetrics(processes: Array<{ worker: string; metrics: MetricsJson }>): Promise<string> {
  const labelled = processes.map(({ worker, metrics }) =>
    metrics.map((metric) =>
      PER_PROCESS.test(metric.name)
        ? { ...metric, aggregator: 'first' as const, values: metric.values.map((value) => ({ ...value, labels: { ...value.labels, worker } })) }
        : metric,
    ),
  );
  return AggregatorRegistry.aggregate(labelled).metrics();
}
