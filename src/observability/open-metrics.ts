/**
 * A registry in the OpenMetrics text format (exemplars included) without switching it over: prom-client
 * renders OpenMetrics only for a registry of that content type, and when it
 * does it renames every counter in place (drops _total), which a later scrape
 * in the Prometheus text format would then print. Each metric is rendered
 * here through a stand-in that carries the OpenMetrics name instead.
 */
import { Registry } from 'prom-client';

export async function openMetricsText(registry: Registry): Promise<string> {
  const renderer = new (Registry as unknown as new (contentType: string) => object)(Registry.OPENMETRICS_CONTENT_TYPE) as {
    getMetricsAsString(metric: { getForPromString(): Promise<MetricData> }): Promise<string>;
  };
  const parts = await Promise.all(
    registry.getMetricsAsArray().map((metric) =>
      renderer.getMetricsAsString({
        async getForPromString() {
          const source = metric as unknown as { getForPromString?(): Promise<MetricData>; get(): Promise<MetricData> };
          const data = await (source.getForPromString ? source.getForPromString() : source.get());
          return data.type === 'counter' ? { ...data, name: data.name.replace(/_total$/, '') } : data;
        },
      }),
    ),
  );
  return `${parts.join('\n')}\n# EOF\n`;
}

interface MetricData {
  readonly name: string;
  readonly type: string;
}
