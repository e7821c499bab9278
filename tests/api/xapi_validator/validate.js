'use strict';
// Reads an xAPI StatementResult on stdin, checks its shape and every statement in it with
// Learning Locker's validator, and prints one JSON line:
//   {"checked": <statements>, "invalid": [{"index", "id", "problems": ["<path>: <warning>"]}]}
// The exit status is 0 whenever the input could be read: the test decides what is acceptable.
const validate = require('@learninglocker/xapi-validation').default;

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const result = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const invalid = [];
  if (!Array.isArray(result.statements) || typeof result.more !== 'string') {
    invalid.push({ index: -1, id: null, problems: ['not a StatementResult: statements[] and more'] });
  }
  (result.statements || []).forEach((statement, index) => {
    const warnings = validate(statement);
    if (warnings.length > 0) {
      invalid.push({
        index,
        id: statement.id,
        problems: warnings.map((w) => `${w.path.join('.')}: ${w.name}${w.typeName ? ` (${w.typeName})` : ''}`),
      });
    }
  });
  process.stdout.write(JSON.stringify({ checked: (result.statements || []).length, invalid }) + '\n');
});
