/** Paths under the repository, for the deploy/ tests. */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const DEPLOY = join(REPO, 'deploy');

export function repoPath(...parts: string[]): string {
  return join(REPO, ...parts);
}

/** Files under dir (recursively), as absolute paths, sorted. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(full));
    else out.push(full);
  }
  return out.sort();
}

export function fromRepo(path: string): string {
  return relative(REPO, path);
}

export type YamlKind = 'manifest' | 'JSON patch' | 'envoy bootstrap' | 'traefik dynamic configuration' | 'service configuration';

/**
 * What a YAML file under deploy/ is. Whatever is not recognisably something
 * else counts as a service configuration, so that a new file is checked as
 * one rather than skipped.
 */
export function yamlKind(path: string): YamlKind {
  const documents = YAML.parseAllDocuments(readFileSync(path, 'utf8')).map((d) => d.toJS() as unknown);
  const mapping = (d: unknown): d is Record<string, unknown> => d !== null && typeof d === 'object' && !Array.isArray(d);
  if (documents.every((d) => mapping(d) && typeof d.apiVersion === 'string' && typeof d.kind === 'string')) return 'manifest';
  const [only] = documents;
  if (documents.length === 1 && Array.isArray(only) && only.every((op) => mapping(op) && 'op' in op && 'path' in op)) return 'JSON patch';
  if (documents.length === 1 && mapping(only) && 'static_resources' in only) return 'envoy bootstrap';
  // Traefik's file provider: routers, middlewares and services under `http` (or tcp/udp).
  const traefik = (d: unknown) => mapping(d) && mapping(d.http) && ['routers', 'middlewares', 'services'].some((k) => k in (d.http as object));
  if (documents.length === 1 && traefik(only)) return 'traefik dynamic configuration';
  return 'service configuration';
}

/** Every service configuration file shipped under deploy/, found by walking it. */
export function serviceConfigs(): string[] {
  return listFiles(DEPLOY).filter((path) => /\.ya?ml$/.test(path) && yamlKind(path) === 'service configuration');
}
