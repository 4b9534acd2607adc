"""DynamoDB access: one table, single-table design, every state change a conditional write."""
