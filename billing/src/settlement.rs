//! What happens to a finalized invoice: credit notes (full or partial, per
//! line, reversing exactly the tax the line carried) and payments (partial,
//! or over, the surplus becoming the customer's credit). The amount due is
//! never negative.

use dotmac_schema::money::{Currency, Rounding};
use rust_decimal::Decimal;

use crate::invoice::InvoiceLine;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("amount: must be greater than 0")]
    NotPositive,
    #[error("amount: {0} is more than the {1} left to credit on this line")]
    MoreThanLeft(Decimal, Decimal),
    #[error("amount: must be a whole number of minor units of {0}")]
    NotOnMinorUnit(Currency),
}

/// A line's credited part so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credited {
    pub net: Decimal,
    pub tax: Decimal,
}

/// One credit-note line: the net credited and the tax it reverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CreditLine {
    pub net: Decimal,
    pub tax: Decimal,
}

impl CreditLine {
    pub fn total(&self) -> Decimal {
        self.net + self.tax
    }
}

/// Credits `net` of `line`, given what earlier notes credited. The tax
/// follows the line's own ratio, rounded, and the note that credits the
/// last of the line takes exactly the tax left: crediting a line in any
/// pieces reverses exactly its net and its tax.
pub fn credit_line(
    line: &InvoiceLine,
    before: Credited,
    net: Decimal,
    currency: Currency,
    rounding: Rounding,
) -> Result<CreditLine, SettlementError> {
    if net <= Decimal::ZERO {
        return Err(SettlementError::NotPositive);
    }
    if rounding.round(net, currency) != net {
        return Err(SettlementError::NotOnMinorUnit(currency));
    }
    let left = line.net - before.net;
    if net > left {
        return Err(SettlementError::MoreThanLeft(net, left.max(Decimal::ZERO)));
    }
    let tax_left = line.tax - before.tax;
    let tax = if net == left || line.net.is_zero() {
        tax_left
    } else {
        rounding
            .round(net * line.tax / line.net, currency)
            .min(tax_left)
    };
    Ok(CreditLine { net, tax })
}

/// A finalized invoice's account: what it asked for and what has reduced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Settlement {
    /// The invoice's amount due at finalization.
    pub due: Decimal,
    pub credited: Decimal,
    pub paid: Decimal,
}

/// Where a payment or credit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Against this invoice.
    pub to_invoice: Decimal,
    /// Beyond what the invoice still asked: the customer's credit.
    pub to_credit_balance: Decimal,
}

impl Settlement {
    pub fn new(due: Decimal) -> Settlement {
        Settlement {
            due,
            ..Settlement::default()
        }
    }

    /// What is still owed, never negative.
    pub fn balance(&self) -> Decimal {
        (self.due - self.credited - self.paid).max(Decimal::ZERO)
    }

    pub fn is_paid(&self) -> bool {
        self.balance().is_zero()
    }

    fn apply(&mut self, amount: Decimal) -> Result<Applied, SettlementError> {
        if amount <= Decimal::ZERO {
            return Err(SettlementError::NotPositive);
        }
        let to_invoice = amount.min(self.balance());
        Ok(Applied {
            to_invoice,
            to_credit_balance: amount - to_invoice,
        })
    }

    /// Records a payment; an overpayment becomes credit.
    pub fn pay(&mut self, amount: Decimal) -> Result<Applied, SettlementError> {
        let applied = self.apply(amount)?;
        self.paid += applied.to_invoice;
        Ok(applied)
    }

    /// Records a credit note's total; beyond the balance (the invoice was
    /// already paid) it becomes credit.
    pub fn credit(&mut self, amount: Decimal) -> Result<Applied, SettlementError> {
        let applied = self.apply(amount)?;
        self.credited += applied.to_invoice;
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::LineKind;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn line(net: Decimal, tax: Decimal) -> InvoiceLine {
        InvoiceLine {
            description: "l".into(),
            kind: LineKind::Recurring,
            amount: net,
            discount: Decimal::ZERO,
            net,
            tax,
            tax_rate: None,
            total: net + tax,
        }
    }

    #[test]
    fn credits_and_payments() {
        let l = line(dec!(99.99), dec!(16.00));
        let (usd, r) = (Currency::USD, Rounding::default());
        let a = credit_line(&l, Credited::default(), dec!(33.33), usd, r).unwrap();
        assert_eq!(a.tax, dec!(5.33));
        let before = Credited {
            net: a.net,
            tax: a.tax,
        };
        assert_eq!(
            credit_line(&l, before, dec!(70), usd, r)
                .unwrap_err()
                .to_string(),
            "amount: 70 is more than the 66.66 left to credit on this line"
        );
        let b = credit_line(&l, before, dec!(66.66), usd, r).unwrap();
        assert_eq!(a.tax + b.tax, dec!(16.00));
        assert!(credit_line(&l, before, dec!(0.001), usd, r).is_err());

        let mut s = Settlement::new(dec!(115.99));
        assert_eq!(s.pay(dec!(100)).unwrap().to_invoice, dec!(100));
        let over = s.pay(dec!(20)).unwrap();
        assert_eq!(
            (over.to_invoice, over.to_credit_balance),
            (dec!(15.99), dec!(4.01))
        );
        assert!(s.is_paid());
        let c = s.credit(dec!(10)).unwrap();
        assert_eq!(
            c.to_credit_balance,
            dec!(10),
            "a credit note on a paid invoice is credit"
        );
        assert_eq!(s.pay(dec!(-1)), Err(SettlementError::NotPositive));
    }

    proptest! {
        /// Credit notes and payments in any order and amounts never make
        /// the balance negative, and nothing is lost: what went to the
        /// invoice plus the balance is the amount due; every amount given
        /// lands on the invoice or the credit balance.
        #[test]
        fn balance_is_never_negative(
            due in 0i64..1_000_000,
            ops in proptest::collection::vec((any::<bool>(), 1i64..400_000), 0..12),
        ) {
            let mut s = Settlement::new(Decimal::new(due, 2));
            let mut given = Decimal::ZERO;
            let mut to_credit = Decimal::ZERO;
            for (is_payment, cents) in ops {
                let amount = Decimal::new(cents, 2);
                let applied = if is_payment { s.pay(amount) } else { s.credit(amount) }.unwrap();
                prop_assert_eq!(applied.to_invoice + applied.to_credit_balance, amount);
                given += amount;
                to_credit += applied.to_credit_balance;
                prop_assert!(s.balance() >= Decimal::ZERO);
            }
            prop_assert_eq!(s.paid + s.credited + s.balance(), s.due);
            prop_assert_eq!(s.paid + s.credited + to_credit, given);
        }

        /// A line credited in any pieces reverses exactly its net and tax.
        #[test]
        fn pieces_reverse_exactly(
            net_cents in 1i64..10_000_000,
            percent in 0i64..3000,
            cuts in proptest::collection::vec(1i64..10_000_000, 0..6),
        ) {
            let (usd, r) = (Currency::USD, Rounding::default());
            let net = Decimal::new(net_cents, 2);
            let tax = r.round(net * Decimal::new(percent, 2) / Decimal::ONE_HUNDRED, usd);
            let l = line(net, tax);
            let mut before = Credited::default();
            for cut in cuts {
                let left = l.net - before.net;
                let piece = Decimal::new(cut, 2).min(left);
                if piece.is_zero() { break; }
                let c = credit_line(&l, before, piece, usd, r).unwrap();
                prop_assert!(c.tax >= Decimal::ZERO);
                before = Credited { net: before.net + c.net, tax: before.tax + c.tax };
                prop_assert!(before.tax <= l.tax);
            }
            let left = l.net - before.net;
            if left > Decimal::ZERO {
                let c = credit_line(&l, before, left, usd, r).unwrap();
                before = Credited { net: before.net + c.net, tax: before.tax + c.tax };
            }
            prop_assert_eq!(before, Credited { net: l.net, tax: l.tax });
        }
    }
}
