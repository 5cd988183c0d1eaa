/**
 * Where things are. The bench runs compiled, from dist/bench/; the repository
 * root is three levels up from here (test/support's ROOT is one level off
 * once compiled, so it is not used).
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = here.includes(`${join('dist', 'bench')}`) ? resolve(here, '..', '..', '..') : resolve(here, '..', '..');
export const DIST = join(ROOT, 'dist');
export const MAIN = join(DIST, 'src', 'main.js');
/** A compiled bench module, e.g. dist('baselines/noop-server.js'). */
export const benchScript = (path: string) => join(DIST, 'bench', path);
