// pretest: the packages the browser tests need besides their own: the portal's browser libraries (web/)
// and the integration harness's MCP servers and SDK (tests/integration/), installed with `npm ci` when missing.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
for (const [dir, marker] of [['web', 'chart.js'], ['tests/integration', '@modelcontextprotocol/sdk']]) {
  if (fs.existsSync(path.join(root, dir, 'node_modules', marker))) continue;
  console.log(`npm ci in ${dir}`);
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: path.join(root, dir), stdio: 'inherit' });
}
