/**
 * A plain HTTP/1.1 request on a connection of its own, for the HTTP
 * authorization mode's tests: the status, the headers (each line kept, in
 * order) and the body. Bounded by `timeoutMs`.
 */
import { request as httpRequest } from 'node:http';

export interface PlainAnswer {
  status: number;
  /** Lower-cased names, every line kept. */
  headers: Map<string, string[]>;
  body: string;
}

export function first(answer: PlainAnswer, name: string): string | undefined {
  return answer.headers.get(name)?.[0];
}

export function plainRequest(
  port: number,
  options: { method?: string; path: string; headers?: Array<[string, string]> | Record<string, string>; body?: string; timeoutMs?: number },
): Promise<PlainAnswer> {
  const headers = Array.isArray(options.headers) ? options.headers.flat() : (options.headers ?? {});
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers, agent: false, setHost: !hasHost(options.headers) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          const map = new Map<string, string[]>();
          for (let i = 0; i < res.rawHeaders.length; i += 2) {
            const name = res.rawHeaders[i]!.toLowerCase();
            map.set(name, [...(map.get(name) ?? []), res.rawHeaders[i + 1]!]);
          }
          clearTimeout(timer);
          resolve({ status: res.statusCode!, headers: map, body });
        });
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer from 127.0.0.1:${port}${options.path} in time`)), options.timeoutMs ?? 5000);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(options.body);
  });
}

function hasHost(headers: Array<[string, string]> | Record<string, string> | undefined): boolean {
  if (headers === undefined) return false;
  const names = Array.isArray(headers) ? headers.map(([name]) => name) : Object.keys(headers);
  return names.some((name) => name.toLowerCase() === 'host');
}
