// ESLint's recommended rules on the pages' scripts: tests/run.sh copies this beside an eslint it
// installs with npm (build/jslint) and runs it from the repository root.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["refinery/pages/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "script", globals: globals.browser },
  },
];
