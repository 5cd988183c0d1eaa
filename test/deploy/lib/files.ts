/** Paths under the repository, for the deploy/ tests. */
import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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
