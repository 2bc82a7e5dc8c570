//! Names and contact addresses people give accounts, tokens and channels.

use super::FieldError;

/// A display name: 1 to 128 printable characters.
pub fn check_name(field: &str, name: &str) -> Result<(), FieldError> {
    if (1..=128).contains(&name.chars().count()) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(FieldError::new(field, "must be 1 to 128 printable characters"))
    }
}

/// An email address, or nothing: plausible (something@domain.tld), at most 254 characters.
pub fn check_email(field: &str, email: &str) -> Result<(), FieldError> {
    let plausible = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if email.is_empty() || plausible {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("{email:?} is not an email address")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_emails() {
        assert!(check_name("name", "payments").is_ok());
        assert_eq!(check_name("name", "").unwrap_err().field, "name");
        assert!(check_name("name", "a\u{7}b").is_err());
        assert!(check_name("name", &"x".repeat(129)).is_err());
        assert!(check_email("email", "").is_ok());
        assert!(check_email("email", "ops@example.com").is_ok());
        assert!(check_email("email", "not an email").is_err());
        assert!(check_email("email", "@example.com").is_err());
    }
}
