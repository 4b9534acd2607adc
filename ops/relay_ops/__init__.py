"""Operations commands for a deployed relay (or the local stack): installed with the project,
never shipped in the Lambda layer, never imported by it."""
