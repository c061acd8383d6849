#!/usr/bin/env node
// Shopify's own linter (@shopify/theme-check-node, the checks Shopify CLI runs) over a theme app
// extension with its "theme-app-extension" config. Exits 0 only when there is no offense of any
// severity: errors, warnings and suggestions all fail, so nothing reaches review half-clean.
//
//   node scripts/theme_check.mjs extensions/popsync-embed
import path from "node:path";

const SEVERITY = ["error", "warning", "info"];

async function main() {
  const root = path.resolve(process.argv[2] || "extensions/popsync-embed");
  let themeCheck;
  try {
    themeCheck = await import("@shopify/theme-check-node");
  } catch (error) {
    console.error(`theme_check: @shopify/theme-check-node is not installed (${error.code || error}); run \`npm ci\``);
    return 2;
  }
  const offenses = await themeCheck.check(root, "theme-check:theme-app-extension");
  for (const offense of offenses) {
    const file = path.relative(process.cwd(), new URL(offense.uri).pathname);
    const line = offense.start ? offense.start.line + 1 : 0;
    console.error(`${file}:${line}: ${SEVERITY[offense.severity] || offense.severity} ${offense.check}: ${offense.message}`);
  }
  console.log(`theme-check (theme-app-extension) on ${path.relative(process.cwd(), root) || "."}: ${offenses.length} offense(s)`);
  return offenses.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`theme_check: ${error.stack || error}`);
    process.exit(2);
  },
);
