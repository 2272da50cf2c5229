//! Azure Key Vault emulator (placeholder; being written).
